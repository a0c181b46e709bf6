// The bench workloads (/work/shared/bench/workloads) built through the real API and worker,
// compared with Debian's buildah building the same directory: both images are unpacked with
// `umoci raw unpack` and their filesystems (paths, types, modes, owners, link targets, file
// contents) and configs (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes,
// Labels) must agree. A second build of each must be fully cached.
//
// Needs: `npm run build` (the worker runs compiled, from $STRATUM_DIST or ./dist), buildah,
// umoci, runc. The bigdata workload (256 MB random + 30M lines) is the slow one: it runs only
// with STRATUM_E2E_SLOW=1 (about a minute more).
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { busyboxRootfs, RedisServerHandle, requireTools, startRedisServer } from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import {
  BENCH_WORKLOADS,
  BuildahStore,
  comparableConfig,
  differences,
  layoutFromStore,
  tree,
  umociUnpack,
} from '@stratum/testing';

jest.setTimeout(600_000);

const REPO = resolve(__dirname, '../..');
const DIST = process.env.STRATUM_DIST ?? join(REPO, 'dist');
const WORKLOADS = BENCH_WORKLOADS;
const SLOW = process.env.STRATUM_E2E_SLOW === '1';
const FAST_WORKLOADS = ['steps', 'multistage', 'manyfiles', 'context'];
const WORKLOAD_NAMES = SLOW ? [...FAST_WORKLOADS, 'bigdata'] : FAST_WORKLOADS;

let work: string;
let dataDir: string;
let redisServer: RedisServerHandle;
let api: ApiServerHandle;
let worker: ChildProcess | null = null;
let buildah: BuildahStore;
let workerOut = '';
const timings: string[] = [];

function env(): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'e2e-buildah',
    WORKER_CONCURRENCY: '2',
    JOB_ATTEMPTS: '1',
  };
}

async function startWorker(): Promise<void> {
  const main = join(DIST, 'workers/builder/src/main.js');
  if (!existsSync(main)) {
    throw new Error(`${main} is missing: run npm run build (or set STRATUM_DIST)`);
  }
  worker = spawn(process.execPath, [main], {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      NODE_PATH: join(REPO, 'node_modules'),
      LOG_LEVEL: 'log',
      PRETTY_LOGS: 'false',
      ...env(),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  worker.stdout?.on('data', (d: Buffer) => (workerOut += d.toString()));
  worker.stderr?.on('data', (d: Buffer) => (workerOut += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/ready \(pid \d+\)/.test(workerOut)) {
    if (worker.exitCode !== null || Date.now() > deadline) {
      throw new Error(`worker did not start:\n${workerOut}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopWorker(): Promise<void> {
  const w = worker;
  if (w === null || w.exitCode !== null || w.signalCode !== null) {
    return;
  }
  const exited = new Promise<void>((r) => w.once('exit', () => r()));
  w.kill('SIGTERM');
  const timer = setTimeout(() => w.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** A copy of workload `name` with rootfs.tar (and the generated context of `context`). */
async function prepareWorkload(name: string): Promise<string> {
  const dir = join(work, 'workloads', name);
  await cp(join(WORKLOADS, name), dir, { recursive: true });
  await writeFile(join(dir, 'rootfs.tar'), busyboxRootfs());
  if (existsSync(join(dir, 'make-context.sh'))) {
    execFileSync('bash', [join(dir, 'make-context.sh'), dir], { stdio: 'ignore' });
    await rm(join(dir, 'make-context.sh'));
  }
  return dir;
}

/** Submits `dir` as a context tar (what curl would send: no client-side filtering) and waits. */
async function buildThroughApi(dir: string, tag: string): Promise<{ record: BuildRecord; seconds: number }> {
  const body = execFileSync('tar', ['-C', dir, '--sort=name', '-cf', '-', '.'], { maxBuffer: 1 << 30 });
  const started = Date.now();
  const res = await request(api.url)
    .post('/api/v1/builds')
    .query({ t: tag })
    .set('content-type', 'application/x-tar')
    .send(body);
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  for (;;) {
    const rec = (await request(api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord;
    if (['succeeded', 'failed', 'cancelled'].includes(rec.state)) {
      return { record: rec, seconds: (Date.now() - started) / 1000 };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Differences that come from the container runtime setup, not from the build: with
 * `USER 65534:65534`, buildah also passes the primary gid as a supplementary group, so `id`
 * prints `groups=65534(nogroup)` in its RUN and not in ours (runc spec from @stratum/runtime).
 */
const KNOWN_DIFFERENCES: Record<string, string[]> = {
  steps: ['/tmp/whoami'],
};

beforeAll(async () => {
  requireTools('buildah', 'umoci', '/usr/sbin/runc');
  if (!existsSync(WORKLOADS)) {
    throw new Error(`no bench workloads at ${WORKLOADS} (the shared folder beside the project)`);
  }
  work = await mkdtemp(join(tmpdir(), 'stratum-e2e-buildah-'));
  dataDir = join(work, 'data');
  buildah = new BuildahStore(join(work, 'buildah'));
  redisServer = await startRedisServer();
  api = await startApiServer(testConfig(env()));
  await startWorker();
});

afterAll(async () => {
  await stopWorker();
  await api?.close();
  await redisServer?.stop();
  if (work !== undefined) {
    buildah?.clean();
    await rm(work, { recursive: true, force: true });
  }
  if (timings.length > 0) {
    process.stdout.write(`\nbuild times (API submit -> finished):\n${timings.join('\n')}\n`);
  }
});

describe('bench workloads: Stratum vs buildah', () => {
  it.each(WORKLOAD_NAMES)(
    '%s: same filesystem and config as buildah, and a rebuild is fully cached',
    async (name) => {
      const dir = await prepareWorkload(name);
      const cold = await buildThroughApi(dir, `bench/${name}:cold`);
      expect({ state: cold.record.state, error: cold.record.error }).toEqual({
        state: 'succeeded',
        error: null,
      });
      const warm = await buildThroughApi(dir, `bench/${name}:warm`);
      expect(warm.record.state).toBe('succeeded');
      // every step, filesystem steps included, is replayed from the cache
      expect(warm.record.steps.map((s) => `${s.name}: ${s.status}`)).toEqual(
        warm.record.steps.map((s) => `${s.name}: cached`),
      );
      expect(warm.record.imageDigest).toBe(cold.record.imageDigest);

      const bh = buildah.build(dir, `bench-${name}`);
      timings.push(
        `  ${name}: stratum cold ${cold.seconds.toFixed(1)} s, warm ${warm.seconds.toFixed(1)} s; buildah ${bh.seconds.toFixed(1)} s`,
      );
      const oursLayout = join(work, 'oci', `${name}-stratum`);
      await layoutFromStore(join(dataDir, 'store'), cold.record.imageDigest as string, oursLayout);
      const ours = await umociUnpack(oursLayout);
      const theirs = await umociUnpack(bh.layout);
      expect(comparableConfig(ours.config)).toEqual(comparableConfig(theirs.config));
      expect(
        differences(tree(ours.rootfs), tree(theirs.rootfs), { known: KNOWN_DIFFERENCES[name] ?? [] }),
      ).toEqual([]);
      await rm(ours.rootfs, { recursive: true, force: true });
      await rm(theirs.rootfs, { recursive: true, force: true });
    },
  );

  it('a malformed Dockerfile fails with its line number', async () => {
    const dir = join(work, 'workloads', 'malformed');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\nENV A=1\nCOPY --nope=1 a /b\n');
    const r = await buildThroughApi(dir, 'bench/malformed:1');
    expect(r.record.state).toBe('failed');
    expect(r.record.error).toMatch(/line 3/);
    expect(r.record.attempts).toBe(1);
  });
});
