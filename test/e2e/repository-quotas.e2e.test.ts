import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import request from 'supertest';
import { busyboxContext, contextTar, pollBuild, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { WorkerModule } from '../../workers/builder/src/worker.module';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { makeImage, OCI_MANIFEST, OciImageParts, sha, skopeo, writeOciLayout } from './registry-fixtures';

// Repository quotas end to end (REPOSITORY_QUOTAS=quota/*=<a small image + 2000 bytes>,roomy/*=64MiB):
// a skopeo push, a /v2 manifest PUT, a build, an import and a tag copy that would take quota/*
// past its limit are refused naming repository, pattern, used and limit, and nothing of them is
// kept (no blob or manifest in the repository, none in the blob store, no tag); writes under
// the limit pass; deleting an image and running maintenance gives its bytes back.

interface Usage {
  pattern: string;
  usedBytes: number;
  limitBytes: number;
}

describe('repository quotas (e2e, REPOSITORY_QUOTAS)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let api: ApiServerHandle;
  let worker: INestApplicationContext;
  let http: ReturnType<typeof request>;
  let host: string;
  let small: OciImageParts;
  let big: OciImageParts;
  let limit: number;

  const smallBytes = (): number => small.manifest.length + small.config.length + small.layer.length;
  const usage = async (): Promise<Record<string, number>> =>
    Object.fromEntries(
      ((await http.get('/api/v1/maintenance/quotas').expect(200)).body as Usage[]).map((u) => [
        u.pattern,
        u.usedBytes,
      ]),
    );
  const inBlobStore = (digest: string): boolean => {
    const hex = digest.replace('sha256:', '');
    return existsSync(join(dataDir, 'store', 'blobs', 'sha256', hex.slice(0, 2), hex));
  };
  const push = (layout: string, ref: string): Promise<string> =>
    skopeo('copy', '--dest-tls-verify=false', `oci:${join(work, layout)}:x`, `docker://${host}/${ref}`);
  const message =
    /quota exceeded for repository quota\/app: REPOSITORY_QUOTAS quota\/\* allows .*\(\d+ bytes\), .* used, this write adds/;

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-quota-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-quota-work-'));
    small = await makeImage(work, { file: 'small\n' });
    // random bytes do not compress: a layer of about 300 KB
    big = await makeImage(work, { file: randomBytes(220_000).toString('base64') });
    await writeOciLayout(join(work, 'layout-small'), 'x', [small]);
    await writeOciLayout(join(work, 'layout-big'), 'x', [big]);
    limit = smallBytes() + 2000;
    const config = testConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      WORKER_ID: 'quota-e2e',
      REPOSITORY_QUOTAS: `quota/*=${limit},roomy/*=64MiB`,
      // the deleted image's blobs are swept (and stop counting) in the maintenance run below
      GC_GRACE_SECONDS: '1',
    });
    api = await startApiServer(config);
    worker = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), { logger: ['error'] });
    await worker.init();
    http = request(api.url);
    host = api.url.replace('http://', '');
  }, 120_000);

  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await redis?.stop();
    // seen once in the fresh-root run: ENOTEMPTY, a file still being removed in worker/ as close() returned
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    await rm(work, { recursive: true, force: true });
  });

  it('a push under the quota passes and is counted once however many repositories hold it', async () => {
    await push('layout-small', 'quota/app:small');
    await push('layout-small', 'quota/other:small');
    expect(await usage()).toEqual({ 'quota/*': smallBytes(), 'roomy/*': 0 });
  }, 120_000);

  it('a skopeo push over the quota is refused (403 DENIED) and leaves no blob, manifest or tag', async () => {
    await expect(push('layout-big', 'quota/app:big')).rejects.toThrow(message);
    await http.head(`/v2/quota/app/blobs/${sha(big.layer)}`).expect(404);
    await http.head('/v2/quota/app/manifests/big').expect(404);
    // the refused upload's parts are deleted and never became a blob
    expect(inBlobStore(sha(big.layer))).toBe(false);
    expect(await usage()).toEqual({ 'quota/*': smallBytes(), 'roomy/*': 0 });
    // by hand, for the answer itself
    const start = await http.post('/v2/quota/app/blobs/uploads/').expect(202);
    const put = await http
      .put(
        `${start.headers.location}${start.headers.location.includes('?') ? '&' : '?'}digest=${sha(big.layer)}`,
      )
      .set('Content-Type', 'application/octet-stream')
      .send(big.layer)
      .expect(403);
    expect(put.body.errors[0]).toMatchObject({
      code: 'DENIED',
      detail: { repository: 'quota/app', pattern: 'quota/*', usedBytes: smallBytes(), limitBytes: limit },
    });
    expect(put.body.errors[0].message).toMatch(message);
    expect(inBlobStore(sha(big.layer))).toBe(false);
  }, 120_000);

  it('a /v2 manifest PUT over the quota is refused and the manifest is not stored', async () => {
    // names blobs the repository holds already; only its own bytes are new
    const manifest = Buffer.from(
      JSON.stringify({
        ...JSON.parse(small.manifest.toString('utf8')),
        annotations: { padding: 'x'.repeat(4000) },
      }),
    );
    const res = await http
      .put('/v2/quota/app/manifests/padded')
      .set('Content-Type', OCI_MANIFEST)
      .send(manifest.toString('utf8'))
      .expect(403);
    expect(res.body.errors[0].code).toBe('DENIED');
    expect(res.body.errors[0].message).toMatch(message);
    await http.head(`/v2/quota/app/manifests/${sha(manifest)}`).expect(404);
    await http.head('/v2/quota/app/manifests/padded').expect(404);
    expect(inBlobStore(sha(manifest))).toBe(false);
  }, 60_000);

  it('a tag copy and an import over the quota are refused with 403 naming repository, pattern, used and limit', async () => {
    await push('layout-big', 'roomy/app:big');
    const copied = await http
      .post('/api/v1/images/roomy/app:big/tag')
      .send({ repository: 'quota/app', tag: 'big' })
      .expect(403);
    expect(copied.body).toMatchObject({ code: 'QUOTA_EXCEEDED' });
    expect(copied.body.message).toMatch(message);
    await http.head('/v2/quota/app/manifests/big').expect(404);
    await http.head(`/v2/quota/app/blobs/${sha(big.layer)}`).expect(404);

    const imported = await http
      .post('/api/v1/images/import')
      .query({ repository: 'quota/app', tag: 'imported' })
      .set('content-type', 'application/x-tar')
      .send(await contextTar({ noise: randomBytes(50_000) }))
      .expect(403);
    expect(imported.body).toMatchObject({ code: 'QUOTA_EXCEEDED' });
    expect(imported.body.message).toMatch(message);
    await http.head('/v2/quota/app/manifests/imported').expect(404);
    expect(await usage()).toMatchObject({ 'quota/*': smallBytes() });
  }, 120_000);

  it('a build tagging into a full repository fails with the message; under another quota it passes', async () => {
    const submit = async (ref: string): Promise<string> => {
      const res = await http
        .post(`/api/v1/builds?t=${ref}`)
        .set('Content-Type', 'application/x-tar')
        .send(await contextTar(busyboxContext('RUN echo built > /built\n')))
        .expect(202);
      return (res.body as { id: string }).id;
    };
    const refused = await pollBuild(
      api.url,
      await submit('quota/app:built'),
      ['succeeded', 'failed'],
      120_000,
    );
    expect(refused.state).toBe('failed');
    expect(refused.error).toMatch(message);
    await http.head('/v2/quota/app/manifests/built').expect(404);
    expect(await usage()).toMatchObject({ 'quota/*': smallBytes() });

    const passed = await pollBuild(
      api.url,
      await submit('roomy/app:built'),
      ['succeeded', 'failed'],
      120_000,
    );
    expect({ state: passed.state, error: passed.error }).toEqual({ state: 'succeeded', error: null });
    const roomy = (await usage())['roomy/*'];
    expect(roomy).toBeGreaterThan(big.layer.length + 500_000); // busybox and the big image
  }, 240_000);

  it('deleting an image gives its bytes back when maintenance sweeps them', async () => {
    await http.delete('/api/v1/images/quota/app:small').expect(200);
    await http.delete('/api/v1/images/quota/other:small').expect(200);
    await new Promise((r) => setTimeout(r, 1100));
    await http.post('/api/v1/maintenance/gc').expect(200);
    expect((await usage())['quota/*']).toBe(0);
    await push('layout-small', 'quota/app:again');
    await http.head('/v2/quota/app/manifests/again').expect(200);
    expect((await usage())['quota/*']).toBe(smallBytes());
  }, 120_000);
});
