import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServerHandle, startApiServer, testConfig } from './api-server';
import { RedisServerHandle, startRedisServer } from './redis-server';
import { startWorkerProcess, WorkerProcessHandle } from './worker-process';
import { mountsUnder, removeWorkerRunDirs } from './tools';

export interface StackOptions {
  /** Names the data directory (`stratum-e2e-<name>-*`) and the worker id (`e2e-<name>`). */
  readonly name: string;
  /** More settings for the API and the worker, over REDIS_URL, DATA_DIR, WORKER_ID, JOB_ATTEMPTS=1. */
  readonly env?: Record<string, string>;
  /** Runs the compiled builder worker beside the API (default true; `npm run build` first). */
  readonly worker?: boolean;
  /** Redis with its append-only file on (a test that searches the AOF). */
  readonly redisAppendonly?: boolean;
}

/** A test's own Stratum: redis-server, data directory, API in process, worker process. */
export interface StackHandle {
  readonly redis: RedisServerHandle;
  readonly dataDir: string;
  readonly api: ApiServerHandle;
  readonly worker: WorkerProcessHandle | null;
  /** The settings the API and the worker run with (for a second API or worker). */
  readonly env: Record<string, string>;
  /** Stops the worker, the API and Redis, and removes the data directory (unless a mount is left in it). */
  stop(): Promise<void>;
}

/** Starts a {@link StackHandle}; what started is stopped again when a later part fails. */
export async function startStack(options: StackOptions): Promise<StackHandle> {
  const dataDir = mkdtempSync(join(tmpdir(), `stratum-e2e-${options.name}-`));
  let redis: RedisServerHandle | undefined;
  let api: ApiServerHandle | undefined;
  let worker: WorkerProcessHandle | null = null;
  // Every part is stopped even when another fails; the first failure is rethrown after.
  const stop = async (): Promise<void> => {
    const failures: Error[] = [];
    for (const step of [() => worker?.stop(10_000), () => api?.close(), () => redis?.stop()]) {
      await Promise.resolve()
        .then(step)
        .catch((err: Error) => failures.push(err));
    }
    // A mount left below it (a leak the test should report) is not deleted through.
    if (mountsUnder(dataDir).length === 0) {
      removeWorkerRunDirs(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    }
    if (failures.length > 0) {
      throw failures[0];
    }
  };
  try {
    redis = await startRedisServer({ appendonly: options.redisAppendonly === true });
    const env = {
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      WORKER_ID: `e2e-${options.name}`,
      JOB_ATTEMPTS: '1',
      ...options.env,
    };
    api = await startApiServer(testConfig(env));
    worker = options.worker === false ? null : await startWorkerProcess(env);
    return { redis, dataDir, api, worker, env, stop };
  } catch (err) {
    await stop().catch(() => undefined); // the start-up error is the one to see
    throw err;
  }
}
