// redis-server crashes (SIGKILL) and restarts from its append-only file while builds are
// queued and no worker runs: none is lost, and each then runs exactly once.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import request from 'supertest';
import { BuildRecord, QueueName } from '@stratum/contracts';
import { QUEUE_PREFIX, RedisKeys } from '@stratum/jobs';
import { startWorkerProcess, WorkerProcessHandle } from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { DurableRedis, overlayMountsUnder, pollFor, submitBuild } from './chaos-support';

const N = process.env.CHAOS_FULL === '1' ? 200 : 50;
jest.setTimeout(N > 50 ? 600_000 : 180_000);

let redisServer: DurableRedis;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle | null = null;

function env(): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'chaos-redis',
    WORKER_CONCURRENCY: '4',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    JOB_ATTEMPTS: '3',
  };
}

/** Runs `fn` with a fresh connection and BullMQ view of the build queue. */
async function withQueue<T>(fn: (queue: Queue, redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const queue = new Queue(QueueName.Build, { connection: redis, prefix: QUEUE_PREFIX });
  try {
    return await fn(queue, redis);
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

beforeAll(async () => {
  redisServer = await DurableRedis.start();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-redis-data-'));
  api = await startApiServer(testConfig(env()));
});

afterAll(async () => {
  await worker?.stop(10_000);
  await api?.close();
  await redisServer?.destroy();
  if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it(`${N} queued builds survive a redis-server crash and restart, and each runs exactly once`, async () => {
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    const res = await submitBuild(
      api.url,
      { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: `build ${i}\n` },
      { t: `chaos/redis:${i}` },
    );
    expect(res.status).toBe(202);
    ids.push((res.body as { id: string }).id);
  }
  const before = await withQueue((q) => q.getJobCounts('waiting', 'active', 'completed', 'failed'));
  expect(before).toMatchObject({ waiting: N, active: 0, completed: 0, failed: 0 });

  await redisServer.stop('SIGKILL');
  await redisServer.start();

  // Everything the API acknowledged is back: jobs, records, index.
  const after = await withQueue(async (q, redis) => ({
    counts: await q.getJobCounts('waiting', 'active', 'completed', 'failed'),
    indexed: await redis.zcard(RedisKeys.buildIndex),
  }));
  expect(after.counts).toMatchObject({ waiting: N, active: 0, completed: 0, failed: 0 });
  expect(after.indexed).toBe(N);
  // The in-process API reconnects by itself.
  await pollFor(
    'the API to answer from the restarted redis',
    async () => ((await request(api.url).get(`/api/v1/builds/${ids[0]}`)).status === 200 ? true : undefined),
    30_000,
  );

  worker = await startWorkerProcess(env(), 60_000);
  const done = await pollFor(
    `all ${N} build jobs to complete`,
    () =>
      withQueue(async (q) => {
        const c = await q.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
        return c.completed + c.failed === N ? c : undefined;
      }),
    N > 50 ? 540_000 : 150_000,
    1000,
  );
  expect(done).toMatchObject({ completed: N, failed: 0, waiting: 0, active: 0, delayed: 0 });

  const records: BuildRecord[] = [];
  for (const id of ids) {
    records.push((await request(api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord);
  }
  const notSucceeded = records.filter((r) => r.state !== 'succeeded');
  const retried = records.filter((r) => r.attempts !== 1);
  expect(notSucceeded.map((r) => `${r.id}: ${r.state} ${r.error ?? ''}`)).toEqual([]);
  expect(retried.map((r) => `${r.id}: attempts ${r.attempts}`)).toEqual([]);
  expect(new Set(records.map((r) => r.imageDigest)).size).toBe(N);
  process.stdout.write(
    `chaos redis-restart: ${N} queued, redis SIGKILLed and restarted from its AOF, ${done.completed} completed, 0 retried\n`,
  );
});
