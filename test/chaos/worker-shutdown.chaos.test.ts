// A worker told to stop while Redis is unreachable exits within its shutdown timeout and a
// margin, instead of waiting for Redis forever (up.sh's Ctrl-C stops redis-server with it).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  RedisServerHandle,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';

jest.setTimeout(90_000);

let dataDir: string;
let redis: RedisServerHandle | undefined;
let worker: WorkerProcessHandle | undefined;

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-shutdown-'));
});

afterAll(async () => {
  await worker?.stop(1000);
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

it.each(['SIGTERM', 'SIGINT'] as const)(
  'a worker given %s with Redis gone exits within WORKER_SHUTDOWN_TIMEOUT_MS and the margin',
  async (signal) => {
    redis = await startRedisServer();
    worker = await startWorkerProcess({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      WORKER_ID: `chaos-shutdown-${signal.toLowerCase()}`,
      WORKER_SHUTDOWN_TIMEOUT_MS: '2000',
    });
    await redis.stop();
    redis = undefined;
    const child = worker.process;
    const exited = new Promise<number>((resolve) => child.once('exit', () => resolve(Date.now())));
    const sent = Date.now();
    child.kill(signal);
    const at = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-1), 30_000))]);
    expect(at).not.toBe(-1); // it exited (it never did before)
    expect(at - sent).toBeLessThan(2000 + 5000 + 3000);
    worker = undefined;
  },
);
