// Lost-worker detection with the production defaults (WORKER_LOST_MS=8000, nothing overridden):
// a worker SIGKILLed mid-RUN is taken over within 10 s of its death and its liveness record
// says it is gone since about then; a worker whose CPU is taken by busy loops on every core
// while its RUN step runs is not taken for lost (one attempt, the step ran once); a worker on
// another host that stalled past its lock and came back stops its attempt, and the worker
// taking the build over waits for that before it runs the steps (never both at once).
import 'reflect-metadata';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import request from 'supertest';
import { busyboxContext, startWorkerProcess, WorkerProcessHandle } from '@stratum/testing';
import {
  alive,
  ChaosStack,
  pollFor,
  overlayMountsUnder,
  runcContainers,
  sleep,
  startChaosStack,
  submitBuild,
  waitForBuild,
} from './chaos-support';

jest.setTimeout(300_000);

/** The bound under test: the default of WORKER_LOST_MS plus the pick-up, as issue 20 asks. */
const TAKEOVER_LIMIT_MS = 10_000;
/** Kills measured (the kill lands at a different point of the lock's renewal each time). */
const KILLS = Math.max(1, Math.floor(Number(process.env.CHAOS_REPEAT ?? '3')) || 3);

const A = 'chaos-lost-a';
const B = 'chaos-lost-b';

let stack: ChaosStack;
const loads: ChildProcess[] = [];
const figures: string[] = [];

beforeAll(async () => {
  stack = await startChaosStack('chaos-lost', 'chaos-lost-api');
});

afterAll(async () => {
  for (const p of loads) {
    if (p.pid !== undefined && alive(p.pid)) {
      p.kill('SIGKILL');
    }
  }
  await stack?.close();
  if (figures.length > 0) {
    process.stdout.write(`chaos worker-lost:\n  ${figures.join('\n  ')}\n`);
  }
});

const runc = (id: string): string => join(stack.dataDir, 'worker', id, 'runc');

interface WorkerView {
  id: string;
  live: boolean;
  goneSince: string | null;
}

async function workerView(id: string): Promise<WorkerView | undefined> {
  const res = await request(stack.api.url).get('/api/v1/workers');
  expect(res.status).toBe(200);
  return (res.body as WorkerView[]).find((w) => w.id === id);
}

it(`a worker SIGKILLed mid-RUN is taken over within ${TAKEOVER_LIMIT_MS} ms with the default WORKER_LOST_MS (${KILLS} kills)`, async () => {
  const takeovers: number[] = [];
  const restarts: number[] = [];
  let victim = A;
  for (let k = 1; k <= KILLS; k++) {
    // Only the victim serves when the build is submitted; the other worker starts just before
    // the kill (its start-up sweep removes what it left when it was killed the round before).
    await stack.stopWorkers();
    const v = await stack.startWorker(victim);
    const res = await submitBuild(stack.api.url, busyboxContext(`RUN sleep 8 && echo ${k} > /x\n`), {
      t: `chaos/lost:${k}`,
      nocache: 'true',
    });
    expect(res.status).toBe(202);
    const id = (res.body as { id: string }).id;
    await pollFor(
      `the RUN container of ${victim}`,
      () => (runcContainers(runc(victim)).length > 0 ? true : undefined),
      60_000,
      50,
    );
    const other = victim === A ? B : A;
    const survivor = await stack.startWorker(other);
    // Anywhere in the lock's renewal cycle (renewed every ~1.9 s by default).
    await sleep(Math.floor(Math.random() * 2000));
    v.process.kill('SIGKILL');
    const killedAt = Date.now();

    const line = `worker ${victim} lost, attempt 2 on worker ${other}`;
    const takeoverMs = await pollFor(
      'the takeover line',
      () => (survivor.output().includes(line) ? Date.now() - killedAt : undefined),
      TAKEOVER_LIMIT_MS + 20_000,
      20,
    );
    const restartMs = await pollFor(
      "the step's container on the survivor",
      () => (runcContainers(runc(other)).length > 0 ? Date.now() - killedAt : undefined),
      30_000,
      20,
    );
    // The killed worker is gone since (about) its death: its last heartbeat, at most 1 s before.
    const gone = await pollFor(
      `${victim} not live in GET /api/v1/workers`,
      async () => {
        const w = await workerView(victim);
        return w !== undefined && !w.live ? w : undefined;
      },
      10_000,
      100,
    );
    const goneSince = Date.parse(gone.goneSince ?? '');
    expect(goneSince).toBeLessThanOrEqual(killedAt);
    expect(goneSince).toBeGreaterThan(killedAt - 1_000 - 500);

    const rec = await waitForBuild(stack.api.url, id, ['succeeded', 'failed', 'cancelled'], 120_000);
    expect({ state: rec.state, attempts: rec.attempts, worker: rec.worker }).toEqual({
      state: 'succeeded',
      attempts: 2,
      worker: other,
    });
    takeovers.push(takeoverMs);
    restarts.push(restartMs);
    figures.push(
      `kill ${k}: ${victim} SIGKILLed mid-RUN; takeover line after ${takeoverMs} ms, step container on ${other} after ${restartMs} ms; gone since ${killedAt - goneSince} ms before the kill`,
    );
    expect(takeoverMs).toBeLessThanOrEqual(TAKEOVER_LIMIT_MS);
    victim = other;
  }
  figures.push(
    `takeover ${Math.min(...takeovers)}-${Math.max(...takeovers)} ms, step restarted ${Math.min(...restarts)}-${Math.max(...restarts)} ms after the kill`,
  );
  // Back with its WORKER_ID, the last killed worker's start-up sweep removes the mounts it left.
  await stack.stopWorkers();
  const back = await stack.startWorker(victim === A ? B : A);
  expect(back.output()).toMatch(/swept what a previous worker left/);
  await stack.stopWorkers();
});

it('a worker whose CPU is taken by busy loops on every core during a 15 s RUN step is not taken over', async () => {
  await stack.stopWorkers();
  const a = await stack.startWorker(A);
  const b = await stack.startWorker(B);
  // The instruction (also in the log) says $((6*7)); only the step's output says 42.
  const marker = 'step-began-42';
  const res = await submitBuild(stack.api.url, busyboxContext('RUN echo step-began-$((6*7)) && sleep 15\n'), {
    t: 'chaos/lost:load',
    nocache: 'true',
  });
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  const runner = await pollFor(
    'the RUN container',
    () => [A, B].find((w) => runcContainers(runc(w)).length > 0),
    60_000,
    50,
  );
  // One busy loop per core for 20 s, at the workers' own priority.
  const cores = availableParallelism();
  const loadStart = Date.now();
  for (let i = 0; i < cores; i++) {
    loads.push(
      spawn(process.execPath, ['-e', 'const end = Date.now() + 20000; while (Date.now() < end) {}'], {
        stdio: 'ignore',
      }),
    );
  }
  // Sampled all along: a container of this build on the other worker would be the step twice.
  const idle = runner === A ? B : A;
  let seenOnIdle = 0;
  const sampler = setInterval(() => (seenOnIdle += runcContainers(runc(idle)).length), 100);
  let rec;
  try {
    rec = await waitForBuild(stack.api.url, id, ['succeeded', 'failed', 'cancelled'], 120_000);
  } finally {
    clearInterval(sampler);
  }
  const tookMs = Date.now() - loadStart;
  const log = await request(stack.api.url).get(`/api/v1/builds/${id}/logs`).buffer(true);
  expect({
    state: rec.state,
    attempts: rec.attempts,
    worker: rec.worker,
    history: rec.attemptHistory?.map((h) => h.worker),
  }).toEqual({ state: 'succeeded', attempts: 1, worker: runner, history: [runner] });
  expect(String(log.text)).not.toMatch(/ lost, attempt /);
  // The step ran once: its first line once in the log, never a container on the other worker.
  expect(String(log.text).split(marker).length - 1).toBe(1);
  expect(seenOnIdle).toBe(0);
  for (const w of [a, b]) {
    expect(w.output()).not.toMatch(/lock lost|could not renew lock/);
  }
  figures.push(
    `${cores} busy loops for 20 s during a 15 s RUN on ${runner}: one attempt, done ${tookMs} ms after the load began`,
  );
});

it('a worker on another host that stalled past its lock and came back: it stops its attempt before the taker runs the steps (waiting for it if need be), never both at once', async () => {
  await stack.stopWorkers();
  // "Another host": its own DATA_DIR (scratch, runc root, layer cache), the same store (linked).
  const otherDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-lost-other-'));
  mkdirSync(join(stack.dataDir, 'store'), { recursive: true });
  symlinkSync(join(stack.dataDir, 'store'), join(otherDir, 'store'));
  const redis = new Redis(stack.redisServer.url);
  let far: WorkerProcessHandle | undefined;
  let sampler: NodeJS.Timeout | undefined;
  try {
    far = await startWorkerProcess({ ...stack.env('chaos-lost-far'), DATA_DIR: otherDir }, 60_000);
    const farRunc = join(otherDir, 'worker', 'chaos-lost-far', 'runc');
    const res = await submitBuild(
      stack.api.url,
      busyboxContext('RUN echo step-began-$((6*7)) && sleep 12\n'),
      {
        t: 'chaos/lost:far',
        nocache: 'true',
      },
    );
    expect(res.status).toBe(202);
    const id = (res.body as { id: string }).id;
    await pollFor(
      'the RUN container on the far worker',
      () => (runcContainers(farRunc).length > 0 ? true : undefined),
      60_000,
      50,
    );
    const near = await stack.startWorker(A);
    // Both runc roots sampled all along: the step must never run on both hosts at once.
    let overlaps = 0;
    sampler = setInterval(() => {
      if (runcContainers(farRunc).length > 0 && runcContainers(runc(A)).length > 0) {
        overlaps++;
      }
    }, 50);

    // The far worker stalls (SIGSTOP) while no stalled check may run (its key held here), so its
    // lock lapses and nobody has taken the job yet; it comes back and heartbeats again (listing
    // the build), and only then may the check hand the job on.
    const checkKey = 'bull:build:stalled-check';
    await redis.set(checkKey, 'held-by-test', 'PX', 60_000);
    far.process.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await pollFor(
      "the far worker's lock to lapse",
      async () => ((await redis.exists(`bull:build:${id}:lock`)) === 0 ? true : undefined),
      30_000,
      20,
    );
    const lapsedMs = Date.now() - stoppedAt;
    // Back, it must not take the job again itself (the wait is what is under test): its store
    // answers ENOTDIR from now on, so its health gate pauses it at its first probe.
    rmSync(join(otherDir, 'store'));
    writeFileSync(join(otherDir, 'store'), 'not a store\n');
    far.process.kill('SIGCONT');
    const resumedAt = Date.now();
    await pollFor(
      'a heartbeat of the resumed far worker',
      async () => {
        const text = await redis.hget('stratum:workers:platforms', 'chaos-lost-far');
        const advert = text === null ? null : (JSON.parse(text) as { seenAt?: number });
        return advert?.seenAt !== undefined && advert.seenAt >= resumedAt ? true : undefined;
      },
      10_000,
      20,
    );
    await redis.del(checkKey);

    const rec = await waitForBuild(stack.api.url, id, ['succeeded', 'failed', 'cancelled'], 120_000);
    clearInterval(sampler);
    sampler = undefined;
    const log = String((await request(stack.api.url).get(`/api/v1/builds/${id}/logs`).buffer(true)).text);
    expect({ state: rec.state, attempts: rec.attempts, worker: rec.worker }).toEqual({
      state: 'succeeded',
      attempts: 2,
      worker: A,
    });
    expect(log).toContain(`worker chaos-lost-far lost, attempt 2 on worker ${A}`);
    const stopped =
      /worker chaos-lost-far is alive on another host and stopped its attempt of this build(?: after (\d+) ms)?/.exec(
        log,
      );
    expect(stopped).not.toBeNull();
    expect(far.output()).toMatch(/lock lost \(taken over elsewhere\), stopping it here/);
    expect(far.output()).toMatch(/object storage does not answer/);
    expect(overlaps).toBe(0);
    expect(near.output()).not.toMatch(/still runs this build/);
    figures.push(
      `far worker SIGSTOPped mid-RUN: lock lapsed after ${lapsedMs} ms, resumed; it stopped its attempt and ${A} ${stopped?.[1] !== undefined ? `waited ${stopped[1]} ms for that` : 'found it stopped'}; ${overlaps} overlapping samples`,
    );
  } finally {
    if (sampler !== undefined) {
      clearInterval(sampler);
    }
    redis.disconnect();
    rmSync(join(otherDir, 'store'), { force: true });
    symlinkSync(join(stack.dataDir, 'store'), join(otherDir, 'store'));
    if (far !== undefined) {
      if (far.process.pid !== undefined && alive(far.process.pid)) {
        far.process.kill('SIGCONT');
      }
      await far.stop(10_000);
      // Its leftovers (if any) swept by a restart on the same dir, then the dir removed.
      if (overlayMountsUnder(otherDir).length > 0) {
        const again = await startWorkerProcess(
          { ...stack.env('chaos-lost-far'), DATA_DIR: otherDir },
          60_000,
        );
        await again.stop(10_000);
      }
    }
    if (overlayMountsUnder(otherDir).length === 0) {
      rmSync(otherDir, { recursive: true, force: true });
    }
  }
});
