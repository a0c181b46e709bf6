// Many hosts for real (issue 20, item 7): three workers, each in a network namespace of its own
// (its own "host": veth link, address, WORKER_ID and DATA_DIR), sharing only Redis and an S3
// store (s3rver) that listen on an address of the real host. Builds spread over the hosts; a
// cache entry made on one host is a hit on a fresh one; a host whose worker is SIGKILLed (its
// namespace stays) loses its RUN container and its build is taken over with the "worker X lost"
// line; a host cut off from the store stops taking jobs while the others go on; a host cut off
// from Redis exits within its shutdown timeout on SIGTERM.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  busyboxContext,
  createNetnsLab,
  freePort,
  NetnsHost,
  NetnsLab,
  RedisServerHandle,
  S3rverProcess,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { overlayMountsUnder, pollFor, runcContainers, submitBuild, waitForBuild } from './chaos-support';

jest.setTimeout(300_000);

const FULL = process.env.CHAOS_FULL === '1';
const SPREAD_BUILDS = FULL ? 30 : 12;
const SHUTDOWN_TIMEOUT_MS = 3000;
/** The worker's own margin past WORKER_SHUTDOWN_TIMEOUT_MS (workers/builder/src/main.ts). */
const SHUTDOWN_MARGIN_MS = 5000;
/** The production bound (WORKER_LOST_MS default): a lost worker's job moves on within it. */
const LOST_MS = 8000;

const IDS = ['mh-a', 'mh-b', 'mh-c'] as const;
type Id = (typeof IDS)[number];

let lab: NetnsLab;
let redis: RedisServerHandle;
let s3: S3rverProcess;
let api: ApiServerHandle;
const dirs: string[] = [];
const host = {} as Record<Id, { netns: NetnsHost; dataDir: string }>;
const workers = new Map<Id, WorkerProcessHandle>();
const figures: string[] = [];

function env(id: Id): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    DATA_DIR: host[id].dataDir,
    WORKER_ID: id,
    WORKER_CONCURRENCY: '1',
    WORKER_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    ...s3.env('stratum-multihost'),
  };
}

async function startWorker(id: Id): Promise<WorkerProcessHandle> {
  const w = await startWorkerProcess(env(id), 60_000, host[id].netns.command);
  workers.set(id, w);
  return w;
}

async function stopWorker(id: Id): Promise<void> {
  await workers.get(id)?.stop(15_000);
  workers.delete(id);
}

const runcRoot = (id: Id): string => join(host[id].dataDir, 'worker', id, 'runc');

const query = (t: string, nocache = true): Record<string, string> => ({
  t,
  buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
  ...(nocache ? { nocache: 'true' } : {}),
});

async function build(files: Record<string, string | Buffer>, q: Record<string, string>): Promise<string> {
  const res = await submitBuild(api.url, files, q);
  expect({
    status: res.status,
    body: res.status === 202 ? null : (res.body as unknown),
    s3: res.status === 202 ? null : s3.describe(),
  }).toEqual({ status: 202, body: null, s3: null });
  return (res.body as { id: string }).id;
}

const finished = (id: string, ms = 180_000): Promise<BuildRecord> =>
  waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], ms);

function expectSucceeded(rec: BuildRecord): void {
  expect({ id: rec.id, state: rec.state, error: rec.error ?? null }).toEqual({
    id: rec.id,
    state: 'succeeded',
    error: null,
  });
}

beforeAll(async () => {
  lab = createNetnsLab('mh', IDS.length);
  try {
    redis = await startRedisServer({ bind: lab.serviceAddress });
    s3 = new S3rverProcess(await freePort(), lab.serviceAddress);
    await s3.start();
    IDS.forEach((id, k) => {
      const dataDir = mkdtempSync(join(tmpdir(), `stratum-chaos-${id}-`));
      dirs.push(dataDir);
      host[id] = { netns: lab.hosts[k], dataDir };
    });
    const apiDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-mh-api-'));
    dirs.push(apiDir);
    api = await startApiServer(
      testConfig({
        REDIS_URL: redis.url,
        DATA_DIR: apiDir,
        WORKER_ID: 'mh-api',
        JOB_ATTEMPTS: '3',
        ...s3.env('stratum-multihost'),
      }),
    );
  } catch (err) {
    await s3?.destroy();
    await redis?.stop();
    lab.close();
    throw err;
  }
});

afterAll(async () => {
  for (const id of [...workers.keys()]) {
    await stopWorker(id);
  }
  await api?.close();
  await s3?.destroy();
  await redis?.stop();
  lab?.close();
  for (const d of dirs) {
    if (overlayMountsUnder(d).length === 0) {
      rmSync(d, { recursive: true, force: true });
    }
  }
  process.stdout.write(`chaos multi-host (3 netns hosts, S3 store):\n  ${figures.join('\n  ')}\n`);
});

it('a host whose worker sees another store (its own disk) refuses to start, naming both stores', async () => {
  const own = mkdtempSync(join(tmpdir(), 'stratum-chaos-mh-fs-'));
  dirs.push(own);
  const started = startWorkerProcess(
    { ...env('mh-a'), STORAGE: 'fs', DATA_DIR: own, WORKER_ID: 'mh-fs' },
    60_000,
    host['mh-a'].netns.command,
  );
  await expect(started).rejects.toThrow(
    /this worker \(mh-fs, store fs:.*\) does not see the store the others use: the probe probes\/\S+ that api .*store s3:http:\/\/10\.213\.\d+\.254:\d+\/stratum-multihost\) wrote is not in this process's store/s,
  );
});

it('every host works through the shared Redis and S3; a cache entry made on one host is a hit on a fresh host', async () => {
  await startWorker('mh-a');
  const files = busyboxContext(`RUN echo multihost-${process.pid} > /made-on && echo cached > /c\n`);
  const first = await finished(await build(files, query('mh/cache:1', false)));
  expectSucceeded(first);
  expect(first.worker).toBe('mh-a');
  expect(first.steps.filter((s) => s.status === 'cached')).toEqual([]);
  await stopWorker('mh-a');

  // Host b has never built anything (empty DATA_DIR): every step is a hit, same image.
  await startWorker('mh-b');
  const again = await finished(await build(files, query('mh/cache:2', false)));
  expectSucceeded(again);
  expect(again.worker).toBe('mh-b');
  const run = again.steps.find((s) => /RUN/.test(s.name));
  expect(run?.status).toBe('cached');
  expect(again.steps.filter((s) => s.status === 'done')).toEqual([]);
  expect(again.imageDigest).toBe(first.imageDigest);
  figures.push(
    `cache: made on mh-a, ${again.steps.filter((s) => s.status === 'cached').length}/${again.steps.length} steps hit on fresh mh-b, digest ${again.imageDigest}`,
  );
});

it(`${SPREAD_BUILDS} builds spread over the three hosts, each once`, async () => {
  await startWorker('mh-a');
  await startWorker('mh-c');
  const ids: string[] = [];
  for (let i = 0; i < SPREAD_BUILDS; i++) {
    ids.push(await build(busyboxContext(`RUN sleep 1 && echo ${i} > /n\n`), query(`mh/spread:${i}`)));
  }
  const recs: BuildRecord[] = [];
  for (const id of ids) {
    recs.push(await finished(id));
  }
  recs.forEach(expectSucceeded);
  expect(recs.map((r) => r.attempts)).toEqual(ids.map(() => 1));
  const per = Object.fromEntries(IDS.map((w) => [w, recs.filter((r) => r.worker === w).length]));
  // BullMQ hands a job to whichever worker asks first: each of the three hosts gets some.
  for (const w of IDS) {
    expect({ worker: w, builds: per[w] }).toEqual({ worker: w, builds: expect.any(Number) as number });
    expect(per[w]).toBeGreaterThan(0);
  }
  figures.push(
    `spread: ${SPREAD_BUILDS} builds → ${IDS.map((w) => `${w} ${per[w]}`).join(', ')}, 1 attempt each`,
  );
});

it('kill -9 of one host\'s worker (its namespace stays): RUN container gone, "worker X lost" takeover on another host within the lock time', async () => {
  const id = await build(busyboxContext('RUN sleep 4 && echo k > /k\n'), query('mh/kill:1'));
  // Whichever host took it: wait for its RUN container.
  const victim = await pollFor(
    'a host to run the build',
    async () => {
      const rec = (await request(api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord;
      const w = rec.worker as Id | undefined;
      return w !== undefined && IDS.includes(w) && runcContainers(runcRoot(w)).length > 0 ? w : undefined;
    },
    60_000,
    100,
  );
  const killed = workers.get(victim)!;
  killed.process.kill('SIGKILL');
  const killedAt = Date.now();
  await pollFor(
    'the killed worker to exit',
    () => (killed.process.signalCode !== null ? true : undefined),
    10_000,
    20,
  );
  workers.delete(victim);
  const containerGoneMs = await pollFor(
    "the killed worker's RUN container to be gone",
    () => (runcContainers(runcRoot(victim)).length === 0 ? Date.now() - killedAt : undefined),
    5_000,
    20,
  );
  // The namespace (the host) is still there: only the process died.
  expect(host[victim].netns.alive()).toBe(true);
  const line = new RegExp(`worker ${victim} lost, attempt 2 on worker (mh-[abc])`);
  const [survivor, takenOverMs] = await pollFor(
    'another host to take the build over',
    () => {
      for (const [w, h] of workers) {
        const m = line.exec(h.output());
        if (m !== null) {
          return [w, Date.now() - killedAt] as const;
        }
      }
      return undefined;
    },
    LOST_MS + 20_000,
    50,
  );
  expect(survivor).not.toBe(victim);
  expect(takenOverMs).toBeLessThan(LOST_MS + 2000);
  const rec = await finished(id);
  expectSucceeded(rec);
  expect(rec.attempts).toBe(2);
  expect(rec.attemptHistory?.map((a) => [a.attempt, a.worker])).toEqual([
    [1, victim],
    [2, survivor],
  ]);
  const log = await request(api.url).get(`/api/v1/builds/${id}/logs`).buffer(true);
  expect(String(log.text)).toContain(`worker ${victim} lost, attempt 2 on worker ${survivor}`);
  // Another host's containers are out of the survivor's sight; its heartbeat had lapsed (it is
  // gone, not running the steps): the log says so and who removes them.
  expect(String(log.text)).toMatch(
    new RegExp(
      `worker ${victim} is gone \\(its heartbeat lapsed[^)]*\\); its containers are not on this host: its death watch removes them when it dies`,
    ),
  );

  // Back on the same host (namespace, WORKER_ID, DATA_DIR): its start-up sweep clears the rest.
  const restarted = await startWorker(victim);
  expect(restarted.output()).toMatch(/swept what a previous worker left/);
  expect(overlayMountsUnder(join(host[victim].dataDir, 'worker', victim))).toEqual([]);
  figures.push(
    `kill -9 of ${victim}: RUN container gone after ${containerGoneMs} ms, taken over by ${survivor} after ${takenOverMs} ms (WORKER_LOST_MS ${LOST_MS})`,
  );
});

it('a host cut off from the store (firewall inside its namespace) stops taking jobs while the others go on', async () => {
  const cut: Id = 'mh-c';
  const port = Number(new URL(s3.endpoint).port);
  const w = workers.get(cut)!;
  host[cut].netns.block(port, true);
  const blockedAt = Date.now();
  try {
    const pausedMs = await pollFor(
      `${cut} to stop taking jobs`,
      () => (/not taking new jobs/.test(w.output()) ? Date.now() - blockedAt : undefined),
      20_000,
      100,
    );
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      ids.push(await build(busyboxContext(`RUN echo cut-${i} > /n\n`), query(`mh/cut:${i}`)));
    }
    const recs: BuildRecord[] = [];
    for (const id of ids) {
      recs.push(await finished(id));
    }
    recs.forEach(expectSucceeded);
    expect(
      recs.flatMap((r) => (r.attemptHistory ?? []).map((a) => a.worker)).filter((x) => x === cut),
    ).toEqual([]);
    expect(recs.map((r) => r.attempts)).toEqual(ids.map(() => 1));
    const others = IDS.filter((x) => x !== cut).map(
      (x) => `${x} ${recs.filter((r) => r.worker === x).length}`,
    );
    host[cut].netns.block(port, false);
    const backAt = Date.now();
    const resumedMs = await pollFor(
      `${cut} to take jobs again`,
      () => (/answers again after the outage/.test(w.output()) ? Date.now() - backAt : undefined),
      20_000,
      100,
    );
    const handedBack = (w.output().match(/handed back: object storage does not answer here/g) ?? []).length;
    figures.push(
      `store cut from ${cut} only: paused ${pausedMs} ms after, ${ids.length} builds meanwhile on ${others.join(', ')} (0 on ${cut}; ${handedBack} job(s) it had already taken handed back), resumed ${resumedMs} ms after the store was back`,
    );
  } finally {
    try {
      host[cut].netns.block(port, false);
    } catch {
      // already removed
    }
  }
});

it('a host whose link is down (Redis and store unreachable) exits on SIGTERM within its shutdown timeout', async () => {
  // Mid-build, so the shutdown has a job to wait for and Redis to tell about it.
  const id = await build(busyboxContext('RUN sleep 8 && echo late > /late\n'), query('mh/term:1'));
  const target = await pollFor(
    'a host to run the long build',
    async () => {
      const rec = (await request(api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord;
      const x = rec.worker as Id | undefined;
      return x !== undefined && runcContainers(runcRoot(x)).length > 0 ? x : undefined;
    },
    60_000,
    100,
  );
  const tw = workers.get(target)!;
  host[target].netns.setLink(false);
  await new Promise((r) => setTimeout(r, 1000));
  const exited = new Promise<number>((r) => tw.process.once('exit', () => r(Date.now())));
  const sent = Date.now();
  tw.process.kill('SIGTERM');
  const at = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-1), 60_000))]);
  workers.delete(target);
  host[target].netns.setLink(true);
  expect(at).not.toBe(-1);
  expect(at - sent).toBeLessThan(SHUTDOWN_TIMEOUT_MS + SHUTDOWN_MARGIN_MS + 2000);
  // The build is handed on once the lock runs out, and completes on another host.
  const rec = await finished(id, 120_000);
  expectSucceeded(rec);
  expect(rec.worker).not.toBe(target);
  figures.push(
    `link of ${target} down mid-build, SIGTERM: exited after ${at - sent} ms (timeout ${SHUTDOWN_TIMEOUT_MS} + margin ${SHUTDOWN_MARGIN_MS}); build finished on ${rec.worker} in attempt ${rec.attempts}`,
  );
});
