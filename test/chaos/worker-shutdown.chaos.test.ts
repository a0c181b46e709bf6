// A worker or an API told to stop while Redis is unreachable exits within its shutdown timeout
// (and, for the worker, a margin), instead of waiting for Redis forever (up.sh's Ctrl-C stops
// redis-server with them).
import { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  freePort,
  RedisServerHandle,
  ServiceProcessHandle,
  startApiProcess,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';

jest.setTimeout(90_000);

let dataDir: string;
let redis: RedisServerHandle | undefined;
let worker: WorkerProcessHandle | undefined;
let api: ServiceProcessHandle | undefined;

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-shutdown-'));
});

afterAll(async () => {
  await worker?.stop(1000);
  await api?.stop(1000);
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
    const ms = await msToExit(worker.process, signal, 30_000);
    expect(ms).not.toBe(-1); // it exited (it never did before)
    expect(ms).toBeLessThan(2000 + 5000 + 3000);
    worker = undefined;
  },
);

/** Sends `signal` to `child` and resolves with the ms until it exited, or -1 after `limitMs`. */
async function msToExit(child: ChildProcess, signal: NodeJS.Signals, limitMs: number): Promise<number> {
  const exited = new Promise<number>((resolve) => child.once('exit', () => resolve(Date.now())));
  const sent = Date.now();
  child.kill(signal);
  const at = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-1), limitMs))]);
  return at === -1 ? -1 : at - sent;
}

it.each(['SIGTERM', 'SIGINT'] as const)(
  'an API given %s with Redis gone and a log stream open exits within API_SHUTDOWN_TIMEOUT_MS',
  async (signal) => {
    redis = await startRedisServer();
    const port = await freePort();
    api = await startApiProcess({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      API_PORT: String(port),
      API_SHUTDOWN_TIMEOUT_MS: '2000',
    });
    // A client holding a connection open (as a dashboard tab's log stream does).
    const held = connect(port, '127.0.0.1');
    await new Promise<void>((r) => held.once('connect', () => r()));
    held.write('GET /api/v1/builds HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    held.on('error', () => undefined);
    await redis.stop();
    redis = undefined;
    const ms = await msToExit(api.process, signal, 30_000);
    held.destroy();
    expect(ms).not.toBe(-1); // it exited (it did not before API_SHUTDOWN_TIMEOUT_MS)
    expect(ms).toBeLessThan(2000 + 3000);
    api = undefined;
  },
);
