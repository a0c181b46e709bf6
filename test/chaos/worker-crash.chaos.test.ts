// A worker killed with SIGKILL in the middle of a RUN step: another worker takes the job over
// after BullMQ's stalled-job check and finishes it with the same image; the killed worker's
// start-up sweep then removes what it left on the host.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildRecord } from '@stratum/contracts';
import {
  busyboxContext,
  RedisServerHandle,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import {
  entriesOf,
  overlayMountsUnder,
  pollFor,
  runcContainers,
  submitBuild,
  waitForBuild,
} from './chaos-support';

jest.setTimeout(150_000);

const KILLED = 'chaos-crash-a';
const SURVIVOR = 'chaos-crash-b';

let redisServer: RedisServerHandle;
let dataDir: string;
let api: ApiServerHandle;
const workers: WorkerProcessHandle[] = [];

function env(workerId: string): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: workerId,
    WORKER_CONCURRENCY: '1',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    // stalled-job detection in seconds rather than the production 30 s + 15 s
    WORKER_LOCK_DURATION_MS: '4000',
    WORKER_STALLED_INTERVAL_MS: '2000',
    JOB_ATTEMPTS: '3',
  };
}

async function startWorker(workerId: string): Promise<WorkerProcessHandle> {
  const w = await startWorkerProcess(env(workerId), 60_000);
  workers.push(w);
  return w;
}

const scratch = (id: string): string => join(dataDir, 'worker', id);

beforeAll(async () => {
  redisServer = await startRedisServer();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-crash-'));
  api = await startApiServer(testConfig(env(SURVIVOR)));
});

afterAll(async () => {
  for (const w of workers) {
    await w.stop(10_000);
  }
  await api?.close();
  await redisServer?.stop();
  if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it('a worker SIGKILLed during RUN: the job is taken over, succeeds with the undisturbed digest, and the restarted worker sweeps its leftovers', async () => {
  const files = busyboxContext('RUN sleep 3 && echo done > /x\n');
  const query = {
    t: 'chaos/crash:1',
    buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
    nocache: 'true',
  };

  const killed = await startWorker(KILLED);
  const res = await submitBuild(api.url, files, query);
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;

  // Wait until the RUN step's container is running in the first worker's runc root.
  await pollFor(
    'the RUN container of the first worker',
    () => (runcContainers(join(scratch(KILLED), 'runc')).length > 0 ? true : undefined),
    60_000,
    100,
  );
  const survivor = await startWorker(SURVIVOR);
  killed.process.kill('SIGKILL');
  await pollFor(
    'the killed worker to exit',
    () => (killed.process.exitCode !== null || killed.process.signalCode !== null ? true : undefined),
    10_000,
  );

  const rec: BuildRecord = await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], 120_000);
  expect(rec.error ?? null).toBeNull();
  expect(rec.state).toBe('succeeded');
  // the first attempt ran on the killed worker, the second on the survivor
  expect(rec.attempts).toBe(2);
  expect(survivor.output()).not.toMatch(/ERROR/);

  // The same context built undisturbed (no cache) gives the same image.
  const ref = await submitBuild(api.url, files, { ...query, t: 'chaos/crash:ref' });
  expect(ref.status).toBe(202);
  const refRec = await waitForBuild(
    api.url,
    (ref.body as { id: string }).id,
    ['succeeded', 'failed'],
    90_000,
  );
  expect(refRec.state).toBe('succeeded');
  expect(rec.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(rec.imageDigest).toBe(refRec.imageDigest);

  // What the killed worker left is still there before its restart (the test proves something).
  const leftMounts = overlayMountsUnder(scratch(KILLED)).length;
  const leftContainers = runcContainers(join(scratch(KILLED), 'runc')).length;
  const leftJobDirs = entriesOf(join(scratch(KILLED), 'jobs')).length;
  expect(leftMounts + leftContainers + leftJobDirs).toBeGreaterThan(0);

  // Restarted with the same WORKER_ID, its start-up sweep removes all of it.
  const restarted = await startWorker(KILLED);
  expect(overlayMountsUnder(scratch(KILLED))).toEqual([]);
  expect(runcContainers(join(scratch(KILLED), 'runc'))).toEqual([]);
  expect(entriesOf(join(scratch(KILLED), 'jobs'))).toEqual([]);
  expect(restarted.output()).toMatch(/swept what a previous worker left/);
  process.stdout.write(
    `chaos worker-crash: build ${id} attempts=${rec.attempts} digest=${rec.imageDigest}; killed worker left ${leftMounts} mount(s), ${leftContainers} container(s), ${leftJobDirs} job dir(s), all swept\n`,
  );
});
