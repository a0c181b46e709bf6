import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { ImageService } from '@stratum/images';
import { ImageTransfer, RegistryClients, RemoteImageResolver } from '@stratum/registry';
import { FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { contextTar, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import {
  DistributionHandle,
  makeImage,
  makeIndex,
  OciImageParts,
  sha,
  skopeo,
  startDistribution,
  writeOciLayout,
} from './registry-fixtures';

// The pull-through mirror (REGISTRY_MIRRORS=hub=http://<distribution>) end to end: a real CNCF
// Distribution registry holds a two-platform image; skopeo pulls it from Stratum under hub/…,
// which fetches on a miss, stores and serves; once upstream is gone Stratum still serves what
// it stored. RemoteImageResolver picks linux/amd64 (or what is asked) out of the index.

describe('pull-through mirror + RemoteImageResolver (e2e, Distribution upstream)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let api: ApiServerHandle;
  let dist: DistributionHandle;
  let host: string;
  let http: ReturnType<typeof request>;
  let amd64: OciImageParts;
  let arm64: OciImageParts;
  let index: Buffer;

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-mirror-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-mirror-work-'));
    dist = await startDistribution();
    amd64 = await makeImage(work, { arch: 'amd64\n' }, { os: 'linux', architecture: 'amd64' });
    arm64 = await makeImage(work, { arch: 'arm64\n' }, { os: 'linux', architecture: 'arm64' });
    index = makeIndex([
      { image: arm64, architecture: 'arm64' },
      { image: amd64, architecture: 'amd64' },
    ]);
    await writeOciLayout(join(work, 'layout'), 'v1', [amd64, arm64], index);
    await skopeo(
      'copy',
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${dist.host}/library/multi:v1`,
    );
    api = await startApiServer(
      testConfig({ REDIS_URL: redis.url, DATA_DIR: dataDir, REGISTRY_MIRRORS: `hub=http://${dist.host}` }),
    );
    host = api.url.replace('http://', '');
    http = request(api.url);
  }, 90_000);

  afterAll(async () => {
    await api?.close();
    await dist?.stop();
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  it('fetches on a miss: the index, then the linux/amd64 image skopeo picks, byte for byte', async () => {
    const raw = await skopeo(
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${host}/hub/library/multi:v1`,
    );
    expect(sha(raw)).toBe(sha(index));
    const out = join(work, 'out');
    await skopeo('copy', '--src-tls-verify=false', `docker://${host}/hub/library/multi:v1`, `oci:${out}:got`);
    const got = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(got.manifests[0].digest).toBe(amd64.digest);
    expect(await readFile(join(out, 'blobs', 'sha256', sha(amd64.layer).slice(7)))).toEqual(amd64.layer);
    await http.head(`/v2/hub/library/multi/blobs/${sha(amd64.layer)}`).expect(200);
    // Only what was asked for was fetched.
    expect((await http.get('/v2/_catalog').expect(200)).body.repositories).toEqual(['hub/library/multi']);
  }, 120_000);

  it('refuses every write into the mirror prefix, naming it; the mirrored image stays as upstream has it', async () => {
    // An image of our own to tag, push, commit from.
    const ours = await makeImage(work, { 'ours.txt': 'ours\n' });
    await writeOciLayout(join(work, 'ours'), 'v1', [ours]);
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${join(work, 'ours')}:v1`,
      `docker://${host}/ns/app:v1`,
    );
    const mirrored = (await http.head('/v2/hub/library/multi/manifests/v1').expect(200)).headers[
      'docker-content-digest'
    ];
    expect(mirrored).toBe(sha(index));
    const prefixNamed = /pull-through mirror prefix "hub\/".*read-only/;

    // /v2: blob uploads, manifest PUT and DELETE answer DENIED (403) with the reason.
    const denied = async (res: request.Response): Promise<void> => {
      expect(res.status).toBe(403);
      expect(res.body.errors[0].code).toBe('DENIED');
      expect(res.body.errors[0].message).toMatch(prefixNamed);
    };
    await denied(await http.post('/v2/hub/library/multi/blobs/uploads/'));
    await denied(
      await http.post(`/v2/hub/library/multi/blobs/uploads/?digest=${sha(ours.layer)}`).send(ours.layer),
    );
    await denied(
      await http
        .put('/v2/hub/library/multi/manifests/v1')
        .set('content-type', 'application/vnd.oci.image.manifest.v1+json')
        .send(ours.manifest),
    );
    await denied(await http.delete(`/v2/hub/library/multi/manifests/${sha(index)}`));
    // The prefix itself too (a repository named `hub`).
    await denied(await http.post('/v2/hub/blobs/uploads/'));
    // `hubble/…` is not under `hub/`: pushed as usual.
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${join(work, 'ours')}:v1`,
      `docker://${host}/hubble/app:v1`,
    );

    // REST API: 400 naming the tag.
    const badRequest = (res: request.Response, tag: string): void => {
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('BAD_REQUEST');
      expect(res.body.message).toContain(`"${tag}"`);
      expect(res.body.message).toMatch(prefixNamed);
    };
    badRequest(
      await http
        .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/tag`)
        .send({ repository: 'hub/library/multi', tag: 'v1' }),
      'hub/library/multi:v1',
    );
    badRequest(
      await http
        .post('/api/v1/images/import')
        .query({ repository: 'hub/library/multi', tag: 'v1' })
        .set('content-type', 'application/x-tar')
        .send(await contextTar({ 'a.txt': 'a\n' })),
      'hub/library/multi:v1',
    );
    badRequest(
      await http
        .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/push`)
        .send({ targets: ['ns/copy:v1', 'hub/library/multi:v1'] }),
      'hub/library/multi:v1',
    );
    badRequest(
      await http
        .post('/api/v1/builds')
        .query({ t: ['ns/built:v1', 'hub/library/multi:v1'] })
        .set('content-type', 'application/x-tar')
        .send(await contextTar({ Dockerfile: 'FROM scratch\nCOPY a.txt /\n', 'a.txt': 'a\n' })),
      'hub/library/multi:v1',
    );
    badRequest(
      await http
        .post(`/api/v1/containers/${'0'.repeat(32)}/commit`)
        .send({ repository: 'hub/library/multi', tag: 'v1' }),
      'hub/library/multi:v1',
    );

    // Nothing was written: the mirror serves upstream's index, no build or push was queued.
    const after = await http.get('/v2/hub/library/multi/manifests/v1').expect(200);
    expect(after.headers['docker-content-digest']).toBe(sha(index));
    expect((await http.get('/api/v1/builds').expect(200)).body.total).toBe(0);
    expect((await http.get('/v2/hub/library/multi/tags/list').expect(200)).body.tags).toEqual(['v1']);
    expect((await http.get('/v2/_catalog').expect(200)).body.repositories).not.toContain('ns/copy');
  }, 60_000);

  it('RemoteImageResolver stores the platform image for FROM, ready for ImageService.load', async () => {
    const root = join(work, 'resolver-store');
    const blobs = new FsBlobStore(root);
    await blobs.init();
    const repositories = new FsRepositoryStore(root);
    const resolver = new RemoteImageResolver(new ImageTransfer(blobs, repositories), new RegistryClients());
    const resolved = await resolver.resolve(`${dist.host}/library/multi:v1`);
    expect(resolved).toEqual({
      repository: `remote/${dist.host.replace(':', '-')}/library/multi`,
      manifestDigest: amd64.digest,
      reference: `${dist.host}/library/multi:v1`,
      source: 'registry',
      endpoint: `http://${dist.host}`,
      failed: [],
    });
    // Asked again: what the first pull stored, without a request.
    expect(await resolver.resolve(`${dist.host}/library/multi:v1`)).toMatchObject({
      manifestDigest: amd64.digest,
      source: 'stored',
      endpoint: null,
    });
    const stored = await new ImageService(blobs, repositories).load(
      resolved.repository,
      resolved.manifestDigest,
    );
    expect(stored.layers.map((l) => l.digest)).toEqual([sha(amd64.layer)]);
    expect(stored.config.architecture).toBe('amd64');
    const arm = await resolver.resolve(`${dist.host}/library/multi:v1`, {
      os: 'linux',
      architecture: 'arm64',
    });
    // The stored tag names the amd64 image: another platform is fetched, not taken from it.
    expect(arm).toMatchObject({ manifestDigest: arm64.digest, source: 'registry' });
    await expect(
      resolver.resolve(`${dist.host}/library/multi:v1`, { os: 'windows', architecture: 'amd64' }),
    ).rejects.toThrow(/no image for windows\/amd64/);
    // FROM hub/… (REGISTRY_MIRRORS=hub=…): fetched into hub/…, the tag naming the index there, as
    // the pull-through keeps it; asked again, the index's linux/amd64 entry is found stored.
    const viaHub = new RemoteImageResolver(new ImageTransfer(blobs, repositories), new RegistryClients(), {
      mirrors: [{ prefix: 'hub', upstream: `http://${dist.host}`, username: null, password: null }],
    });
    expect(viaHub.servesPullThrough('hub/library/multi:v1')).toBe(true);
    expect(viaHub.servesPullThrough('library/multi:v1')).toBe(false);
    expect(await viaHub.resolve('hub/library/multi:v1')).toMatchObject({
      repository: 'hub/library/multi',
      manifestDigest: amd64.digest,
      source: 'registry',
    });
    expect(await repositories.getTag('hub/library/multi', 'v1')).toBe(sha(index));
    expect(await viaHub.resolve('hub/library/multi:v1')).toMatchObject({
      manifestDigest: amd64.digest,
      source: 'stored',
    });
  }, 60_000);

  it('serves what it stored once upstream is gone', async () => {
    await dist.stop();
    const raw = await skopeo(
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${host}/hub/library/multi:v1`,
    );
    expect(sha(raw)).toBe(sha(index));
    const out = join(work, 'offline');
    await skopeo('copy', '--src-tls-verify=false', `docker://${host}/hub/library/multi:v1`, `oci:${out}:got`);
    // Something never fetched is an error naming the upstream trouble, not a hang.
    const missing = await http.get('/v2/hub/library/other/manifests/v1');
    expect([502, 503]).toContain(missing.status);
  }, 60_000);
});
