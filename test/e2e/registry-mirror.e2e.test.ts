import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { ImageService } from '@stratum/images';
import { ImageTransfer, RegistryClients, RemoteImageResolver } from '@stratum/registry';
import { FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
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

  it('refuses pushes to a mirror repository', async () => {
    const res = await http.post('/v2/hub/library/multi/blobs/uploads/').expect(405);
    expect(res.body.errors[0].code).toBe('DENIED');
  });

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
    expect(arm.manifestDigest).toBe(arm64.digest);
    await expect(
      resolver.resolve(`${dist.host}/library/multi:v1`, { os: 'windows', architecture: 'amd64' }),
    ).rejects.toThrow(/no image for windows\/amd64/);
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
