// A worker killed with SIGKILL in the middle of a RUN step: another worker takes the job over
// after BullMQ's stalled-job check and finishes it with the same image; the killed worker's
// start-up sweep then removes what it left on the host.
import 'reflect-metadata';
import { createCipheriv } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { busyboxContext, WorkerProcessHandle } from '@stratum/testing';
import { ApiServerHandle } from '../support/api-server';
import {
  entriesOf,
  filesUnder,
  ChaosStack,
  overlayMountsUnder,
  pollFor,
  runcContainers,
  submitBuild,
  startChaosStack,
  waitForBuild,
} from './chaos-support';

jest.setTimeout(240_000);

/**
 * Each kill case runs CHAOS_REPEAT times (default 1, the bounded CI form): a kill lands at a
 * slightly different point each time, so running them several times locally finds what one
 * run does not.
 */
const REPEAT = Math.max(1, Math.floor(Number(process.env.CHAOS_REPEAT ?? '1')) || 1);
const RUNS = Array.from({ length: REPEAT }, (_, k) => k + 1);

const KILLED = 'chaos-crash-a';
const SURVIVOR = 'chaos-crash-b';

let stack: ChaosStack;
let dataDir: string;
let api: ApiServerHandle;
const startWorker = (workerId: string): Promise<WorkerProcessHandle> => stack.startWorker(workerId);
const stopWorkers = (): Promise<void> => stack.stopWorkers();

const scratch = (id: string): string => join(dataDir, 'worker', id);

beforeAll(async () => {
  // the production stalled-job detection (WORKER_LOST_MS: 8 s)
  stack = await startChaosStack('chaos-crash', SURVIVOR);
  ({ dataDir, api } = stack);
});

afterAll(async () => {
  await stack?.close();
});

/** The image of the RUN case's context built undisturbed, made once for every run. */
let runReference: string | undefined;

it.each(RUNS)(
  `a worker SIGKILLed during RUN (run %i of ${REPEAT}): the job is taken over, succeeds with the undisturbed digest, and the restarted worker sweeps its leftovers`,
  async (run) => {
    const files = busyboxContext('RUN sleep 3 && echo done > /x\n');
    const query = {
      t: `chaos/crash:${run}`,
      buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
      nocache: 'true',
    };

    const killed = await startWorker(KILLED);
    const res = await submitBuild(api.url, files, query);
    expect(res.status).toBe(202);
    const id = (res.body as { id: string }).id;

    // Once the RUN step's container runs in the first worker's runc root, the second takes over.
    const survivor = await stack.killDuringRun(killed, KILLED, SURVIVOR);

    const killedAt = Date.now();
    // Its RUN container dies with it (the death watch), so the step never runs twice at once.
    await pollFor(
      "the killed worker's RUN container to be gone",
      () => (runcContainers(join(scratch(KILLED), 'runc')).length === 0 ? true : undefined),
      5_000,
      50,
    );
    const containerGoneMs = Date.now() - killedAt;
    const takenOverMs = await pollFor(
      'the survivor to take the build over',
      () => (/lost, attempt 2 on worker/.test(survivor.output()) ? Date.now() - killedAt : undefined),
      30_000,
      100,
    );

    const rec: BuildRecord = await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], 120_000);
    expect(rec.error ?? null).toBeNull();
    expect(rec.state).toBe('succeeded');
    // the first attempt ran on the killed worker, the second on the survivor: records and logs say so
    expect(rec.attempts).toBe(2);
    expect(rec.worker).toBe(SURVIVOR);
    expect(rec.attemptHistory?.map((a) => [a.attempt, a.worker])).toEqual([
      [1, KILLED],
      [2, SURVIVOR],
    ]);
    expect(rec.steps.filter((s) => s.status === 'done').every((s) => s.worker === SURVIVOR)).toBe(true);
    expect(survivor.output()).toContain(`worker ${KILLED} lost, attempt 2 on worker ${SURVIVOR}`);
    const log = await request(api.url).get(`/api/v1/builds/${id}/logs`).buffer(true);
    expect(String(log.text)).toContain(`worker ${KILLED} lost, attempt 2 on worker ${SURVIVOR}`);
    expect(survivor.output()).not.toMatch(/ERROR/);

    // The same context built undisturbed (no cache) gives the same image.
    if (runReference === undefined) {
      const ref = await submitBuild(api.url, files, { ...query, t: 'chaos/crash:ref' });
      expect(ref.status).toBe(202);
      const refRec = await waitForBuild(
        api.url,
        (ref.body as { id: string }).id,
        ['succeeded', 'failed'],
        90_000,
      );
      expect(refRec.state).toBe('succeeded');
      runReference = refRec.imageDigest ?? undefined;
    }
    expect(rec.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(rec.imageDigest).toBe(runReference);

    // What the killed worker left is still there before its restart (the test proves something).
    const leftMounts = overlayMountsUnder(scratch(KILLED)).length;
    const leftContainers = runcContainers(join(scratch(KILLED), 'runc')).length;
    const leftJobDirs = entriesOf(join(scratch(KILLED), 'jobs')).length;
    expect(leftContainers).toBe(0);
    expect(leftMounts + leftJobDirs).toBeGreaterThan(0);

    // Restarted with the same WORKER_ID, its start-up sweep removes all of it.
    const restarted = await startWorker(KILLED);
    expect(overlayMountsUnder(scratch(KILLED))).toEqual([]);
    expect(runcContainers(join(scratch(KILLED), 'runc'))).toEqual([]);
    expect(entriesOf(join(scratch(KILLED), 'jobs'))).toEqual([]);
    expect(restarted.output()).toMatch(/swept what a previous worker left/);
    await stopWorkers();
    process.stdout.write(
      `chaos worker-crash (RUN, run ${run}/${REPEAT}): build ${id} attempts=${rec.attempts} digest=${rec.imageDigest}; RUN container gone ${containerGoneMs} ms after the kill, taken over after ${takenOverMs} ms; killed worker left ${leftMounts} mount(s), ${leftContainers} container(s), ${leftJobDirs} job dir(s), all swept\n`,
    );
  },
);

// A worker SIGKILLed while it turns a large upper dir into a layer (snapshot, streamed into the
// blob store), or later in that write: same outcome expected as for a kill during RUN.
describe('a worker SIGKILLed after RUN, while the large layer is written', () => {
  const FULL = process.env.CHAOS_FULL === '1';
  // 8 MiB of incompressible, deterministic bytes, repeated: the layer neither compresses nor
  // changes between builds.
  const seed = ((): Buffer => {
    const c = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16, 0));
    return Buffer.concat([c.update(Buffer.alloc(8 * 1024 * 1024)), c.final()]);
  })();
  const copies = FULL ? 38 : 16;
  const files = busyboxContext(
    `COPY seed /seed\nRUN sleep 2 && for i in $(seq ${copies}); do cat /seed; done > /big && echo ok > /ok\n`,
    { seed },
  );
  const query = (t: string): Record<string, string> => ({
    t,
    buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
    nocache: 'true',
  });
  const storeTmp = (): string => join(dataDir, 'store', 'tmp');
  const bigTmpFile = (min: number): boolean =>
    filesUnder(storeTmp()).some((f) => {
      try {
        return statSync(f).size >= min;
      } catch {
        return false;
      }
    });
  let reference: string | undefined;

  beforeAll(async () => {
    await stopWorkers();
    await startWorker('chaos-crash-ref');
    const res = await submitBuild(api.url, files, query('chaos/bigref:1'));
    expect(res.status).toBe(202);
    const rec = await waitForBuild(
      api.url,
      (res.body as { id: string }).id,
      ['succeeded', 'failed'],
      180_000,
    );
    expect(rec.error ?? null).toBeNull();
    reference = rec.imageDigest ?? undefined;
    expect(reference).toMatch(/^sha256:[0-9a-f]{64}$/);
    await stopWorkers();
  });

  afterEach(async () => {
    await stopWorkers();
  });

  const phases: [string, () => Promise<void>][] = [
    [
      'snapshot',
      async () => {
        // kill as soon as the RUN container is gone: the upper dir is being snapshotted
        await pollFor(
          'the RUN container to exit',
          () =>
            runcContainers(join(scratch('chaos-crash-snapshot'), 'runc')).length === 0 ? true : undefined,
          120_000,
          50,
        );
      },
    ],
    [
      'upload',
      async () => {
        // kill with the layer blob half written into the store
        await pollFor(
          'a layer upload past 32 MiB',
          () => (bigTmpFile(32 * 1024 * 1024) ? true : undefined),
          120_000,
          50,
        );
      },
    ],
  ];

  it.each(phases.flatMap(([phase, wait]) => RUNS.map((run) => [phase, run, wait] as const)))(
    `during %s (run %i of ${REPEAT}): taken over, same digest as undisturbed, leftovers swept`,
    async (phase, run, waitForPhase) => {
      const killedId = `chaos-crash-${phase}`;
      const killed = await startWorker(killedId);
      const res = await submitBuild(api.url, files, query(`chaos/big${phase}:${run}`));
      expect(res.status).toBe(202);
      const id = (res.body as { id: string }).id;
      await pollFor(
        'the RUN container of the first worker',
        () => (runcContainers(join(scratch(killedId), 'runc')).length > 0 ? true : undefined),
        120_000,
        50,
      );
      await waitForPhase();
      killed.process.kill('SIGKILL');
      await pollFor(
        'the killed worker to exit',
        () => (killed.process.exitCode !== null || killed.process.signalCode !== null ? true : undefined),
        10_000,
      );
      const killedAt = `${filesUnder(storeTmp()).length} store tmp file(s)`;
      const survivor = await startWorker(`chaos-crash-${phase}-b`);

      const rec = await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], 180_000);
      expect(rec.error ?? null).toBeNull();
      expect(rec.state).toBe('succeeded');
      expect(rec.attempts).toBe(2);
      expect(rec.imageDigest).toBe(reference);
      expect(survivor.output()).not.toMatch(/ERROR/);

      const leftMounts = overlayMountsUnder(scratch(killedId)).length;
      const leftJobDirs = entriesOf(join(scratch(killedId), 'jobs')).length;
      expect(leftMounts + leftJobDirs).toBeGreaterThan(0);
      const restarted = await startWorker(killedId);
      expect(overlayMountsUnder(scratch(killedId))).toEqual([]);
      expect(runcContainers(join(scratch(killedId), 'runc'))).toEqual([]);
      expect(entriesOf(join(scratch(killedId), 'jobs'))).toEqual([]);
      expect(restarted.output()).toMatch(/swept what a previous worker left/);
      process.stdout.write(
        `chaos worker-crash (${phase}, run ${run}/${REPEAT}): build ${id} attempts=${rec.attempts} digest=${rec.imageDigest}; at the kill ${killedAt}; killed worker left ${leftMounts} mount(s), ${leftJobDirs} job dir(s), all swept; store tmp now ${filesUnder(storeTmp()).length} file(s)\n`,
      );
    },
  );
});
