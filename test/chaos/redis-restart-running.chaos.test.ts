// redis-server crashes (SIGKILL) and restarts from its append-only file on the same port while a
// worker is in the middle of builds (some mid-RUN, others queued) and a client is submitting one:
// the worker and the API reconnect by themselves (neither is restarted), every acknowledged build
// succeeds, none completes twice with different images, and the worker leaves no overlay mount
// or runc container behind.
//
// It runs against the Redis configuration we ship (infra/redis.conf) and, as a comparison, with
// `appendfsync everysec`, the setting we shipped before. A SIGKILL of redis-server loses nothing
// already written to the AOF file (the kernel keeps it), and with everysec Redis writes the AOF
// before answering, except when an fsync is still running, in which case it may answer writes
// it postpones writing for up to 2 s: those are lost by a SIGKILL. A host crash or power loss
// with everysec loses the last ~1 s (up to 2 s) of answered writes, which can be a build the API
// already answered 202 for. That is why infra/redis.conf says `appendfsync always`.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import request from 'supertest';
import { BuildEvent, BuildRecord, QueueName } from '@stratum/contracts';
import { QUEUE_PREFIX, RedisKeys } from '@stratum/jobs';
import { busyboxContext, startWorkerProcess, WorkerProcessHandle } from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import {
  alive,
  DurableRedis,
  entriesOf,
  INFRA_REDIS_CONF,
  overlayMountsUnder,
  pollFor,
  redisConfSetting,
  runcContainers,
  sleep,
  submitBuild,
  waitForBuild,
} from './chaos-support';

const FULL = process.env.CHAOS_FULL === '1';
/** Builds submitted before the crash; the worker runs 3 at a time, so most wait queued. */
const N = FULL ? 24 : 8;
const CONCURRENCY = 3;
jest.setTimeout(FULL ? 600_000 : 240_000);

const shipped = redisConfSetting(INFRA_REDIS_CONF, 'appendfsync');

const files = (i: number, sleepSeconds: number): Record<string, string | Buffer> =>
  busyboxContext(`RUN sleep ${sleepSeconds} && echo ${i} > /f\n`);
// Layer timestamps pinned, no cache: a build run again yields the same image.
const query = (t: string): Record<string, string> => ({
  t,
  buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
  nocache: 'true',
});

interface Case {
  readonly label: string;
  readonly redis: { configFile?: string; extraArgs?: string[] };
  /** How long redis-server stays down. */
  readonly outageMs: number;
  /** Builds submitted before the crash, and how long their RUN step takes. */
  readonly builds: number;
  readonly sleepSeconds: number;
  readonly workerEnv: Record<string, string>;
}
const cases: Case[] = [
  {
    label: `infra/redis.conf as shipped (appendfsync ${shipped ?? '?'}), down 1.5 s`,
    redis: { configFile: INFRA_REDIS_CONF },
    outageMs: 1500,
    builds: N,
    sleepSeconds: 2,
    workerEnv: {},
  },
];
if (FULL) {
  cases.push({
    // Longer than the job locks last: the locks of the running jobs expire while Redis is down
    // and the stalled check queues those jobs again; the new delivery finds the build finished
    // (BuildProcessor) or runs it, and a finished build never moves back (BuildRecordStore).
    label: 'down 8 s, longer than the 4 s job locks',
    redis: { configFile: INFRA_REDIS_CONF },
    outageMs: 8000,
    builds: CONCURRENCY + 1,
    sleepSeconds: 2,
    workerEnv: { WORKER_LOCK_DURATION_MS: '4000', WORKER_STALLED_INTERVAL_MS: '2000' },
  });
}
if (shipped !== 'everysec' && FULL) {
  cases.push({
    label: 'infra/redis.conf with appendfsync everysec, down 1.5 s',
    redis: { configFile: INFRA_REDIS_CONF, extraArgs: ['--appendfsync', 'everysec'] },
    outageMs: 1500,
    builds: N,
    sleepSeconds: 2,
    workerEnv: {},
  });
}

describe.each(cases.map((c) => [c.label, c] as const))(
  'redis-server SIGKILLed while a worker runs builds, %s',
  (label, c) => {
    let redisServer: DurableRedis;
    let dataDir: string;
    let api: ApiServerHandle;
    let worker: WorkerProcessHandle | null = null;
    const workerId = `chaos-redis-run-${cases.indexOf(c)}`;

    const env = (): Record<string, string> => ({
      REDIS_URL: redisServer.url,
      DATA_DIR: dataDir,
      WORKER_ID: workerId,
      WORKER_CONCURRENCY: String(CONCURRENCY),
      WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
      JOB_ATTEMPTS: '3',
      ...c.workerEnv,
    });
    const scratch = (): string => join(dataDir, 'worker', workerId);

    beforeAll(async () => {
      redisServer = await DurableRedis.start(c.redis);
      dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-redis-run-'));
      api = await startApiServer(testConfig(env()));
      worker = await startWorkerProcess(env(), 60_000);
    });

    afterAll(async () => {
      await worker?.stop(10_000);
      await api?.close();
      await redisServer?.destroy();
      if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it('every acknowledged build succeeds once, with its undisturbed image; nothing is left on the host', async () => {
      const ids: string[] = [];
      for (let i = 0; i < c.builds; i++) {
        const res = await submitBuild(api.url, files(i, c.sleepSeconds), query(`chaos/redis-run:${i}`));
        expect(res.status).toBe(202);
        ids.push((res.body as { id: string }).id);
      }
      // Crash once RUN steps are running (containers in the worker's runc root).
      await pollFor(
        'a RUN container in the worker',
        () => (runcContainers(join(scratch(), 'runc')).length > 0 ? true : undefined),
        120_000,
        50,
      );
      const states = await Promise.all(
        ids.map(
          async (id) => ((await request(api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord).state,
        ),
      );
      const runningAtKill = ids.filter((_, i) => states[i] === 'running');
      expect(runningAtKill.length).toBeGreaterThan(0);
      if (c.builds > CONCURRENCY) {
        expect(states.filter((s) => s === 'queued').length).toBeGreaterThan(0);
      }

      await redisServer.stop('SIGKILL');
      // A client submits while Redis is down: its request waits for the reconnect, then is answered.
      const during = submitBuild(
        api.url,
        files(c.builds, c.sleepSeconds),
        query(`chaos/redis-run:${c.builds}`),
      );
      await sleep(c.outageMs);
      await redisServer.start();
      const duringRes = await during;
      expect(duringRes.status).toBe(202);
      ids.push((duringRes.body as { id: string }).id);

      const records: BuildRecord[] = [];
      for (const id of ids) {
        records.push(
          await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], FULL ? 400_000 : 150_000),
        );
      }
      expect(
        records.filter((r) => r.state !== 'succeeded').map((r) => `${r.id}: ${r.state} ${r.error ?? ''}`),
      ).toEqual([]);
      // The same processes throughout: nobody restarted the worker.
      expect(alive(worker!.process.pid!)).toBe(true);

      const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
      const queue = new Queue(QueueName.Build, { connection: redis, prefix: QUEUE_PREFIX });
      let report: string[];
      try {
        const counts = await pollFor(
          'the build queue to drain',
          async () => {
            const c = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
            return c.completed === ids.length ? c : undefined;
          },
          30_000,
        );
        expect(counts).toMatchObject({ completed: ids.length, failed: 0, waiting: 0, active: 0, delayed: 0 });
        // Every result a build ever reported names the image its record holds: a build that ran
        // twice (retried mid-flight) made the same image both times.
        report = [];
        for (const r of records) {
          const events = (await redis.xrange(RedisKeys.buildEvents(r.id), '-', '+')).map(
            ([, fields]) => JSON.parse(fields[1]) as BuildEvent,
          );
          const results = events.flatMap((e) => (e.type === 'result' ? [e.imageDigest] : []));
          const succeeded = events.filter((e) => e.type === 'state' && e.state === 'succeeded').length;
          expect({ id: r.id, results: [...new Set(results)] }).toEqual({
            id: r.id,
            results: [r.imageDigest],
          });
          const job = await queue.getJob(r.id);
          if (job !== undefined && (job.attemptsStarted !== 1 || job.stalledCounter !== 0)) {
            report.push(
              `${r.id.slice(0, 8)} job started ${job.attemptsStarted}x, stalled ${job.stalledCounter}x`,
            );
          }
          if (r.attempts !== 1 || results.length !== 1 || succeeded !== 1) {
            report.push(
              `${r.id.slice(0, 8)} attempts=${r.attempts} results=${results.length} succeeded=${succeeded}`,
            );
          }
        }
      } finally {
        await queue.close();
        redis.disconnect();
      }
      expect(new Set(records.map((r) => r.imageDigest)).size).toBe(ids.length);

      // Nothing left on the host by the builds the crash interrupted (without a worker restart).
      await pollFor(
        'the worker to release its mounts and containers',
        () =>
          overlayMountsUnder(scratch()).length === 0 &&
          runcContainers(join(scratch(), 'runc')).length === 0 &&
          entriesOf(join(scratch(), 'jobs')).length === 0
            ? true
            : undefined,
        10_000,
      );

      // The builds that were mid-RUN at the crash made the image an undisturbed build makes.
      const refs = await Promise.all(
        runningAtKill.map(async (id) => {
          const i = ids.indexOf(id);
          const ref = await submitBuild(api.url, files(i, c.sleepSeconds), query(`chaos/redis-run-ref:${i}`));
          expect(ref.status).toBe(202);
          return { i, ref: (ref.body as { id: string }).id };
        }),
      );
      for (const { i, ref } of refs) {
        const refRec = await waitForBuild(api.url, ref, ['succeeded', 'failed'], 120_000);
        expect(refRec.state).toBe('succeeded');
        expect(refRec.imageDigest).toBe(records[i].imageDigest);
      }
      const workerNotes = worker!
        .output()
        .split('\n')
        .filter((l) => /lock|stall|Missing|delivered again|ERROR/i.test(l))
        .map((l) => l.slice(0, 200));
      process.stdout.write(
        `worker log lines about locks/errors (${workerNotes.length}):\n  ${workerNotes.slice(0, 15).join('\n  ')}\n`,
      );
      process.stdout.write(
        `chaos redis-restart-running (${label}): ${ids.length} builds (${runningAtKill.length} running at the kill, 1 submitted during the outage), all succeeded; ${report.length === 0 ? 'each ran once' : `not once: ${report.join('; ')}`}; no mount, container or job dir left\n`,
      );
    });
  },
);
