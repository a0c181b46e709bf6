// Object storage (S3, here a real s3rver in a child process) goes away while push jobs run:
// the pushes fail their attempts as transient and BullMQ retries them with backoff; once the
// storage is back they end `succeeded`, every tag resolves to a manifest whose config and layers
// all exist, and a client pulling a blob during the outage gets an error status, never wrong bytes.
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, PushRecord } from '@stratum/contracts';
import {
  busyboxContext,
  freePort,
  RedisServerHandle,
  S3rverProcess,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { overlayMountsUnder, pollFor, submitBuild, waitForBuild } from './chaos-support';
import { loadConfig } from '@stratum/config';

jest.setTimeout(240_000);

const FULL = process.env.CHAOS_FULL === '1';
const OUTAGE_MS = FULL ? 20_000 : 10_000;

let redisServer: RedisServerHandle;
let s3: S3rverProcess;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle | undefined;

// The production defaults (JOB_ATTEMPTS=5, exponential backoff from 3 s: retries after 3, 9, 21
// and 45 s) must ride out the outage: the test does not raise them. CHAOS_JOB_ATTEMPTS overrides.
const ATTEMPTS =
  process.env.CHAOS_JOB_ATTEMPTS ?? String(loadConfig({ REDIS_URL: 'redis://127.0.0.1:1' }).jobAttempts);

function env(): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'chaos-s3',
    WORKER_CONCURRENCY: '2',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    // test/support's testConfig defaults to 1 attempt: use the production default here
    JOB_ATTEMPTS: ATTEMPTS,
    STORAGE: 's3',
    S3_ENDPOINT: s3.endpoint,
    S3_ACCESS_KEY: 'S3RVER',
    S3_SECRET_KEY: 'S3RVER',
    S3_BUCKET: 'stratum-chaos',
  };
}

beforeAll(async () => {
  redisServer = await startRedisServer();
  s3 = new S3rverProcess(await freePort());
  await s3.start();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-s3data-'));
  api = await startApiServer(testConfig(env()));
  worker = await startWorkerProcess(env(), 60_000);
});

afterAll(async () => {
  await worker?.stop(10_000);
  await api?.close();
  await s3?.destroy();
  await redisServer?.stop();
  if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** GET with the raw body bytes, whatever the status or content type. */
async function getBytes(path: string): Promise<{ status: number; body: Buffer }> {
  const res = await request(api.url)
    .get(path)
    .set('accept', 'application/vnd.oci.image.manifest.v1+json')
    .buffer(true)
    .parse((r, cb) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => cb(null, Buffer.concat(chunks)));
      r.on('error', () => cb(null, Buffer.concat(chunks)));
    })
    .ok(() => true);
  return { status: res.status, body: res.body as Buffer };
}

interface Manifest {
  config: { digest: string };
  layers: { digest: string }[];
}

it('pushes outlive an object storage outage: retried with backoff, all succeed, every tag complete, no wrong bytes served', async () => {
  // An image in S3: a tiny busybox build.
  const res = await submitBuild(api.url, busyboxContext('RUN echo s3 > /s3\n'), {
    t: 'chaos/s3src:1',
    buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
  });
  expect(res.status).toBe(202);
  const build = await waitForBuild(
    api.url,
    (res.body as { id: string }).id,
    ['succeeded', 'failed'],
    120_000,
  );
  expect(build.error ?? null).toBeNull();
  expect(build.state).toBe('succeeded');
  const srcManifest = await getBytes('/v2/chaos/s3src/manifests/1');
  expect(srcManifest.status).toBe(200);
  const layer = (JSON.parse(srcManifest.body.toString()) as Manifest).layers[0].digest;

  // Several pushes of many targets each, then storage goes away while they run.
  const pushIds: string[] = [];
  for (let p = 0; p < 4; p++) {
    const targets = Array.from({ length: 32 }, (_, i) => `copy/p${p}-${i}:1`);
    const r = await request(api.url).post('/api/v1/images/chaos%2Fs3src:1/push').send({ targets });
    expect(r.status).toBe(202);
    pushIds.push((r.body as PushRecord).id);
  }
  await s3.stop();
  const outageStart = Date.now();

  // A pull during the outage: an error status, or (never expected) exactly the right bytes.
  const pulls: number[] = [];
  while (Date.now() - outageStart < OUTAGE_MS) {
    const pull = await getBytes(`/v2/chaos/s3src/blobs/${layer}`);
    pulls.push(pull.status);
    if (pull.status === 200) {
      expect(sha256(pull.body)).toBe(layer);
    } else {
      expect(pull.status).toBeGreaterThanOrEqual(500);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  // Something failed for real while storage was down (the test proves something).
  const during = await Promise.all(
    pushIds.map(async (id) => (await request(api.url).get(`/api/v1/pushes/${id}`)).body as PushRecord),
  );
  expect(pulls.some((s) => s >= 500)).toBe(true);
  await s3.start();

  const finals = await Promise.all(
    pushIds.map((id) =>
      pollFor(
        `push ${id} to finish`,
        async () => {
          const rec = (await request(api.url).get(`/api/v1/pushes/${id}`)).body as PushRecord;
          return rec.state === 'succeeded' || rec.state === 'failed' ? rec : undefined;
        },
        120_000,
        500,
      ),
    ),
  );
  for (const rec of finals) {
    expect({ id: rec.id, state: rec.state, error: rec.error }).toEqual({
      id: rec.id,
      state: 'succeeded',
      error: null,
    });
  }
  // At least one push had an attempt fail on the outage and was retried.
  expect(Math.max(...finals.map((r) => r.attempts))).toBeGreaterThan(1);

  // Every tag of the catalog resolves to a manifest whose config and layers all exist.
  const catalog = await request(api.url).get('/v2/_catalog').query({ n: '1000' });
  expect(catalog.status).toBe(200);
  const repos = (catalog.body as { repositories: string[] }).repositories;
  expect(repos.length).toBeGreaterThanOrEqual(1 + 4 * 32);
  let tags = 0;
  for (const repo of repos) {
    const list = await request(api.url).get(`/v2/${repo}/tags/list`);
    expect(list.status).toBe(200);
    for (const tag of (list.body as { tags: string[] }).tags) {
      const m = await getBytes(`/v2/${repo}/manifests/${tag}`);
      expect(`${repo}:${tag} ${m.status}`).toBe(`${repo}:${tag} 200`);
      const manifest = JSON.parse(m.body.toString()) as Manifest;
      for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
        const head = await request(api.url).head(`/v2/${repo}/blobs/${d}`);
        expect(`${repo}:${tag} ${d} ${head.status}`).toBe(`${repo}:${tag} ${d} 200`);
      }
      tags += 1;
    }
  }
  process.stdout.write(
    `chaos storage-outage: ${OUTAGE_MS} ms outage; pulls during it: ${pulls.join(',')}; ` +
      `push states during it: ${during.map((r) => `${r.state}/${r.attempts}`).join(',')}; ` +
      `attempts: ${finals.map((r) => r.attempts).join(',')}; ${tags} tags checked\n`,
  );
});

it('queued builds wait out a storage outage without spending attempts; the running one retries; health shows it', async () => {
  // One worker taking one job at a time, so that builds stay queued behind the running one.
  await worker?.stop(10_000);
  worker = await startWorkerProcess(
    { ...env(), WORKER_ID: 'chaos-s3-gate', WORKER_CONCURRENCY: '1' },
    60_000,
  );
  const query = (t: string): Record<string, string> => ({
    t,
    buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
    nocache: 'true',
  });
  const first = await submitBuild(api.url, busyboxContext('RUN sleep 5 && echo a > /a\n'), query('gate/a:1'));
  expect(first.status).toBe(202);
  const running = (first.body as { id: string }).id;
  const queued: string[] = [];
  for (const name of ['b', 'c', 'd']) {
    const r = await submitBuild(
      api.url,
      busyboxContext(`RUN echo ${name} > /${name}\n`),
      query(`gate/${name}:1`),
    );
    expect(r.status).toBe(202);
    queued.push((r.body as { id: string }).id);
  }
  await waitForBuild(api.url, running, ['running'], 60_000);

  await s3.stop();
  const outageStart = Date.now();
  const paused = await pollFor(
    'the worker to stop taking jobs',
    () => (/not taking new jobs/.test(worker!.output()) ? Date.now() - outageStart : undefined),
    15_000,
    100,
  );
  const health = await request(api.url).get('/healthz');
  expect(health.status).toBe(503);
  expect(health.body).toMatchObject({ status: 'degraded', redis: 'ok', storage: expect.any(String) });
  expect((health.body as { storage: string }).storage).not.toBe('ok');
  // The outage outlasts the running build's RUN step (it fails its attempt on the upload) and
  // a backoff: the queued builds are still waiting, not one attempt spent.
  while (Date.now() - outageStart < OUTAGE_MS + 5000) {
    await new Promise((r) => setTimeout(r, 1000));
  }
  for (const id of queued) {
    const rec = (await request(api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord;
    expect({ id, state: rec.state, attempts: rec.attempts }).toEqual({ id, state: 'queued', attempts: 0 });
  }
  await s3.start();
  const backAt = Date.now();
  const resumed = await pollFor(
    'the worker to take jobs again',
    () => (/answers again after the outage/.test(worker!.output()) ? Date.now() - backAt : undefined),
    30_000,
    100,
  );
  const finals: BuildRecord[] = [];
  for (const id of [running, ...queued]) {
    finals.push(await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], 180_000));
  }
  for (const rec of finals) {
    expect({ id: rec.id, state: rec.state, error: rec.error }).toEqual({
      id: rec.id,
      state: 'succeeded',
      error: null,
    });
  }
  expect(finals.slice(1).map((r) => r.attempts)).toEqual([1, 1, 1]);
  expect((await request(api.url).get('/healthz')).status).toBe(200);
  process.stdout.write(
    `chaos storage-outage (queued builds): paused ${paused} ms after the store went down, resumed ${resumed} ms after it answered again; ` +
      `attempts running=${finals[0].attempts} queued=${finals
        .slice(1)
        .map((r) => r.attempts)
        .join(',')}\n`,
  );
});
