import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import request from 'supertest';
import { existsSync } from 'node:fs';
import {
  busyboxContext,
  busyboxRootfs,
  contextTar,
  pollBuild,
  RedisServerHandle,
  startRedisServer,
} from '@stratum/testing';
import { WorkerModule } from '../../workers/builder/src/worker.module';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { makeImage, OCI_MANIFEST, OciImageParts, sha, skopeo, writeOciLayout } from './registry-fixtures';

// Immutable tags end to end (IMMUTABLE_TAGS=team/*:v*): once team/app:v1 names a digest it never
// names another and is never deleted, through every write path — /v2 manifest PUT (skopeo) and
// DELETE, the tag API, the image delete API and a build tagging into it (real worker, in
// process); the same digest is fine, and tags outside the patterns move freely.

interface OciErrors {
  errors: { code: string; message: string }[];
}

describe('immutable tags (e2e, IMMUTABLE_TAGS)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let api: ApiServerHandle;
  let worker: INestApplicationContext;
  let http: ReturnType<typeof request>;
  let host: string;
  let a: OciImageParts;
  let b: OciImageParts;

  const digestOf = async (ref: string): Promise<string> =>
    (await http.head(`/v2/team/app/manifests/${ref}`).expect(200)).headers['docker-content-digest'];

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-immutable-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-immutable-work-'));
    const config = testConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      WORKER_ID: 'immutable-e2e',
      IMMUTABLE_TAGS: 'team/*:v*',
    });
    api = await startApiServer(config);
    worker = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), { logger: ['error'] });
    await worker.init();
    http = request(api.url);
    host = api.url.replace('http://', '');
    a = await makeImage(work, { file: 'image a\n' });
    b = await makeImage(work, { file: 'image b\n' });
    await writeOciLayout(join(work, 'layout-a'), 'x', [a]);
    await writeOciLayout(join(work, 'layout-b'), 'x', [b]);
  }, 120_000);

  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  const push = (layout: string, ref: string): Promise<string> =>
    skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${join(work, layout)}:x`,
      `docker://${host}/team/app:${ref}`,
    );

  it('/v2: a second push of another digest is refused, the same digest is fine, other tags move', async () => {
    await push('layout-a', 'v1');
    await push('layout-a', 'v1');
    await expect(push('layout-b', 'v1')).rejects.toThrow(/immutable/);
    expect(await digestOf('v1')).toBe(a.digest);
    await push('layout-b', 'latest');
    await push('layout-a', 'latest');
    expect(await digestOf('latest')).toBe(a.digest);
    // by hand, for the answer itself
    const put = await http
      .put('/v2/team/app/manifests/v1')
      .set('Content-Type', 'application/vnd.oci.image.manifest.v1+json')
      .send(b.manifest.toString('utf8'))
      .expect(409);
    expect((put.body as OciErrors).errors[0]).toMatchObject({ code: 'DENIED' });
    expect((put.body as OciErrors).errors[0].message).toMatch(
      /tag team\/app:v1 is immutable \(IMMUTABLE_TAGS\): it names sha256:[0-9a-f]{64}, not sha256:/,
    );
    // a manifest new to the repository, refused: not stored, linked or left untagged
    const fresh = Buffer.from(
      JSON.stringify({ ...JSON.parse(b.manifest.toString('utf8')), annotations: { fresh: 'yes' } }),
    );
    await http
      .put('/v2/team/app/manifests/v1')
      .set('Content-Type', OCI_MANIFEST)
      .send(fresh.toString('utf8'))
      .expect(409);
    await http.head(`/v2/team/app/manifests/${sha(fresh)}`).expect(404);
    const hex = sha(fresh).slice('sha256:'.length);
    expect(existsSync(join(dataDir, 'store', 'blobs', 'sha256', hex.slice(0, 2), hex))).toBe(false);
    expect(await digestOf('v1')).toBe(a.digest);
  }, 120_000);

  it('/v2 DELETE of the tag or its manifest is refused; a mutable tag goes', async () => {
    expect((await http.delete('/v2/team/app/manifests/v1').expect(409)).body.errors[0].code).toBe('DENIED');
    // latest names a too: refused as a whole, so latest is still there
    expect(await digestOf('latest')).toBe(a.digest);
    await http.delete(`/v2/team/app/manifests/${a.digest}`).expect(409);
    expect(await digestOf('v1')).toBe(a.digest);
    expect(await digestOf('latest')).toBe(a.digest);
    await push('layout-b', 'scratch');
    await http.delete('/v2/team/app/manifests/scratch').expect(202);
  }, 60_000);

  it('the tag and delete APIs refuse to move or remove it', async () => {
    await push('layout-b', 'latest');
    // team/app:latest now names b: pointing v1 at it is refused, at a (same digest) is fine
    const moved = await http
      .post('/api/v1/images/team/app:latest/tag')
      .send({ repository: 'team/app', tag: 'v1' });
    expect(moved.status).toBe(409);
    expect(moved.body).toMatchObject({ code: 'TAG_IMMUTABLE' });
    await http
      .post(`/api/v1/images/team/app@${a.digest}/tag`)
      .send({ repository: 'team/app', tag: 'v1' })
      .expect(201);
    const removed = await http.delete('/api/v1/images/team/app:v1');
    expect(removed.status).toBe(409);
    expect(removed.body.message).toMatch(/team\/app:v1 is immutable/);
    expect(await digestOf('v1')).toBe(a.digest);
  }, 60_000);

  it('a build tagging another image into it fails naming the tag; a new v tag is created', async () => {
    const submit = async (tag: string): Promise<string> => {
      const res = await http
        .post(`/api/v1/builds?t=team/app:${tag}`)
        .set('Content-Type', 'application/x-tar')
        .send(await contextTar(busyboxContext('RUN echo built > /built\n')))
        .expect(202);
      return (res.body as { id: string }).id;
    };
    const refused = await pollBuild(api.url, await submit('v1'), ['succeeded', 'failed'], 120_000);
    expect(refused.state).toBe('failed');
    expect(refused.error).toMatch(/team\/app:v1 is immutable/);
    expect(await digestOf('v1')).toBe(a.digest);
    const created = await pollBuild(api.url, await submit('v2'), ['succeeded', 'failed'], 120_000);
    expect({ state: created.state, error: created.error }).toEqual({ state: 'succeeded', error: null });
    expect(await digestOf('v2')).toMatch(/^sha256:/);
  }, 240_000);

  it('a commit into it fails naming the tag; a commit to a new v tag is created', async () => {
    await http
      .post('/api/v1/images/import')
      .query({ repository: 'team/base', tag: '1' })
      .set('content-type', 'application/x-tar')
      .send(busyboxRootfs())
      .expect(201);
    const waitFor = async <T>(what: string, check: () => Promise<T | null>): Promise<T> => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const v = await check();
        if (v !== null) {
          return v;
        }
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    interface View {
      state: string;
      commits: { id: string; state: string; error: string | null; imageDigest: string | null }[];
    }
    const view = async (id: string): Promise<View> =>
      (await http.get(`/api/v1/containers/${id}`).expect(200)).body as View;
    const created = await http
      .post('/api/v1/containers')
      .send({ image: 'team/base:1', cmd: ['sh', '-c', 'echo committed > /c'] })
      .expect(202);
    const id = (created.body as { id: string }).id;
    await waitFor('the container to exit', async () => ((await view(id)).state === 'exited' ? true : null));
    const commit = async (tag: string): Promise<View['commits'][number]> => {
      const res = await http
        .post(`/api/v1/containers/${id}/commit`)
        .send({ repository: 'team/app', tag })
        .expect(202);
      const commitId = (res.body as { commitId: string }).commitId;
      return waitFor(`commit ${commitId}`, async () => {
        const c = (await view(id)).commits.find((x) => x.id === commitId);
        return c !== undefined && (c.state === 'succeeded' || c.state === 'failed') ? c : null;
      });
    };
    const refused = await commit('v1');
    expect(refused.state).toBe('failed');
    expect(refused.error).toMatch(/team\/app:v1 is immutable/);
    expect(await digestOf('v1')).toBe(a.digest);
    const made = await commit('v3');
    expect(made).toMatchObject({ state: 'succeeded', error: null });
    expect(await digestOf('v3')).toBe(made.imageDigest);
  }, 180_000);
});
