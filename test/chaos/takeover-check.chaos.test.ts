// A worker that stops renewing its lock without dying (SIGSTOP: hung, swapped out, cut off)
// keeps its RUN container running, and its death watch never fires. The worker that takes the
// build over on the same host (one DATA_DIR) finds the old attempt's container through runc's
// state and kills it before running the steps again, so a step never runs twice at once.
import 'reflect-metadata';
import { join } from 'node:path';
import request from 'supertest';
import { busyboxContext, WorkerProcessHandle } from '@stratum/testing';
import {
  alive,
  ChaosStack,
  pollFor,
  runcContainers,
  startChaosStack,
  submitBuild,
  waitForBuild,
} from './chaos-support';

jest.setTimeout(240_000);

const STOPPED = 'chaos-takeover-a';
const SURVIVOR = 'chaos-takeover-b';

let stack: ChaosStack;
let stopped: WorkerProcessHandle | undefined;

beforeAll(async () => {
  stack = await startChaosStack('chaos-takeover', SURVIVOR);
});

afterAll(async () => {
  const pid = stopped?.process.pid;
  if (pid !== undefined && alive(pid)) {
    stopped!.process.kill('SIGKILL');
  }
  await stack?.close();
});

it('a build taken over from a stopped (not dead) worker on the same host: its RUN container is killed before the steps run again', async () => {
  stopped = await stack.startWorker(STOPPED);
  const res = await submitBuild(api(), busyboxContext('RUN sleep 15 && echo done > /x\n'), {
    t: 'chaos/takeover:1',
    buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
    nocache: 'true',
  });
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  const oldRoot = join(stack.dataDir, 'worker', STOPPED, 'runc');
  await pollFor(
    'the RUN container of the first worker',
    () => (runcContainers(oldRoot).length > 0 ? true : undefined),
    60_000,
    100,
  );
  const survivor = await stack.startWorker(SURVIVOR);
  stopped.process.kill('SIGSTOP');
  const stoppedAt = Date.now();

  const line = `worker ${STOPPED}'s attempt still had 1 container(s) on this host`;
  const clearedMs = await pollFor(
    'the survivor to clear the old attempt',
    () => (survivor.output().includes(line) ? Date.now() - stoppedAt : undefined),
    60_000,
    50,
  );
  // Gone when the survivor goes on, while the stopped worker is still there (its death watch did nothing).
  expect(runcContainers(oldRoot)).toEqual([]);
  expect(alive(stopped.process.pid!)).toBe(true);
  expect(survivor.output()).toContain(`worker ${STOPPED} lost, attempt 2 on worker ${SURVIVOR}`);

  const rec = await waitForBuild(api(), id, ['succeeded', 'failed', 'cancelled'], 120_000);
  expect({ state: rec.state, error: rec.error ?? null, attempts: rec.attempts, worker: rec.worker }).toEqual({
    state: 'succeeded',
    error: null,
    attempts: 2,
    worker: SURVIVOR,
  });
  const log = await request(api()).get(`/api/v1/builds/${id}/logs`).buffer(true);
  expect(String(log.text)).toContain(line);
  stopped.process.kill('SIGKILL');
  const killed = stopped.process;
  await pollFor(
    'the stopped worker to exit',
    () => (killed.signalCode !== null ? true : undefined),
    10_000,
    50,
  );
  // Back with the same WORKER_ID, its start-up sweep removes the mounts its attempt left.
  const restarted = await stack.startWorker(STOPPED);
  expect(restarted.output()).toMatch(/swept what a previous worker left/);
  process.stdout.write(
    `chaos takeover-check: worker ${STOPPED} SIGSTOPped during RUN; ${SURVIVOR} took over and killed its container ${clearedMs} ms after the stop; build succeeded in attempt ${rec.attempts}\n`,
  );
});

function api(): string {
  return stack.api.url;
}
