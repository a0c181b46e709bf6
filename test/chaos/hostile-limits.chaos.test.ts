// Hostile builds through the real API and worker (issue 13 items 3, 5, 6): a few hundred
// bytes that double a variable forty times (ENV, ARG, commit changes), 10,000 LABELs, a
// context over the entry limit. Each must end with a clear error (or, for the LABELs, succeed
// within a generous time), attempted once (never retried onto another worker), with the
// worker alive, its peak memory bounded, and serving the next build. Prints a summary table.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { BUSYBOX_FIXTURE, contextTar, pollBuild } from '@stratum/testing';
import { startStack, StackHandle } from '../support/stack';
import { submitBuild } from './chaos-support';

jest.setTimeout(600_000);

/** Small on purpose: the entry-limit cases stay quick; the LABEL case needs only a few files. */
const MAX_CONTEXT_ENTRIES = 2_000;
/** The worker's peak RSS (VmHWM) after every case: it stayed ~270 MB in the measured run. */
const MAX_WORKER_PEAK_KB = 768 * 1024;

let stack: StackHandle;
const table: { case: string; outcome: string; seconds: string }[] = [];

beforeAll(async () => {
  stack = await startStack({
    name: 'hostile-limits',
    env: { MAX_CONTEXT_ENTRIES: String(MAX_CONTEXT_ENTRIES), WORKER_CONCURRENCY: '1' },
  });
});

afterAll(async () => {
  console.table(table);
  await stack?.stop();
});

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function workerPid(): number {
  const pid = stack.worker?.process.pid;
  if (pid === undefined) {
    throw new Error('the stack has no worker process');
  }
  return pid;
}

/** The worker process is still the one started, and running. */
function expectWorkerAlive(): void {
  const child = stack.worker?.process;
  expect(child?.exitCode).toBeNull();
  expect(child?.signalCode).toBeNull();
}

/** Peak resident set of the worker so far (kB), from /proc. */
function workerPeakKb(): number {
  const status = readFileSync(`/proc/${workerPid()}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  if (m === null) {
    throw new Error(`no VmHWM in /proc/${workerPid()}/status`);
  }
  return Number(m[1]);
}

/** Submits `files` as a context and follows the build to its end; returns the record and the time. */
async function build(
  files: Record<string, string> | Buffer,
  query: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<{ record: BuildRecord; seconds: number }> {
  const t0 = Date.now();
  const res = await submitBuild(stack.api.url, files, query);
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  const record = await pollBuild(stack.api.url, id, ['succeeded', 'failed'], timeoutMs, 250);
  return { record, seconds: (Date.now() - t0) / 1000 };
}

/** A build the worker must still serve after a hostile one. */
async function expectServesNext(label: string): Promise<void> {
  const { record } = await build({ Dockerfile: 'FROM scratch\nCOPY a /a\n', a: label });
  expect(record.state).toBe('succeeded');
  expectWorkerAlive();
}

/** Records a failed hostile build: one attempt, the message as expected, the worker fine. */
async function expectRefusedBuild(
  name: string,
  files: Record<string, string>,
  message: RegExp,
  query: Record<string, string> = {},
): Promise<void> {
  const { record, seconds } = await build(files, query);
  table.push({
    case: name,
    outcome: `${record.state}: ${record.error ?? ''}`.slice(0, 120),
    seconds: seconds.toFixed(1),
  });
  expect(record.state).toBe('failed');
  expect(record.error).toMatch(message);
  expect(record.attempts).toBe(1); // failed for good, not retried
  expect(seconds).toBeLessThan(60);
  expectWorkerAlive();
  expect(workerPeakKb()).toBeLessThan(MAX_WORKER_PEAK_KB);
  await expectServesNext(name);
}

describe('hostile Dockerfiles fail fast with the line and the limit', () => {
  it('ENV A=$A$A forty times', async () => {
    const df = ['FROM scratch', 'ENV A=x', ...Array.from({ length: 40 }, () => 'ENV A=$A$A'), ''].join('\n');
    await expectRefusedBuild(
      'ENV doubling x40',
      { Dockerfile: df },
      /^dockerfile error on line 20: .*maxExpandedWordLength \(131072\)/,
    );
  });

  it('an ARG chain doubling forty times', async () => {
    const chain = Array.from({ length: 40 }, (_, k) => `ARG A${k + 1}=$A${k}$A${k}`);
    const df = ['ARG A0=x', ...chain, 'FROM scratch', 'RUN true', ''].join('\n');
    await expectRefusedBuild(
      'ARG chain x40',
      { Dockerfile: df },
      /^dockerfile error on line 19: .*maxExpandedWordLength/,
    );
  });

  it('a build arg multiplied by LABELs past the stage budget', async () => {
    const df = [
      'FROM scratch',
      'ARG B',
      ...Array.from({ length: 1100 }, (_, k) => `LABEL l${k}=$B$B`),
      '',
    ].join('\n');
    await expectRefusedBuild(
      'LABEL x $B (8 KiB build arg)',
      { Dockerfile: df },
      // 16 KiB substituted per LABEL: the 1025th (line 1027) passes 16 MiB.
      /^dockerfile error on line 1027: .*maxSubstitutedLength \(16777216\)/,
      // (a longer value does not fit in the request line: 431)
      { buildargs: JSON.stringify({ B: 'b'.repeat(8 * 1024) }) },
    );
  });
});

describe('10,000 LABELs build in linear time', () => {
  it('succeeds well within the bound, the worker peak memory bounded', async () => {
    const df = [
      'FROM scratch',
      ...Array.from({ length: 10_000 }, (_, k) => `LABEL l${k}="value ${k}"`),
      '',
    ].join('\n');
    const { record, seconds } = await build({ Dockerfile: df }, { t: 'hostile/labels:10000' }, 300_000);
    table.push({ case: '10,000 LABELs', outcome: record.state, seconds: seconds.toFixed(1) });
    expect({ state: record.state, error: record.error }).toEqual({ state: 'succeeded', error: null });
    expect(record.steps).toHaveLength(10_000);
    // 17.8 s measured on a loaded 2-core machine; rewriting the record per step took 292 s.
    expect(seconds).toBeLessThan(150);
    expect(workerPeakKb()).toBeLessThan(MAX_WORKER_PEAK_KB);
    // The list answers summaries: 200 builds of 10,000 steps were 8.7 MB.
    const list = await request(stack.api.url).get('/api/v1/builds?limit=200').expect(200);
    expect(list.text.length).toBeLessThan(50_000);
    const item = (list.body as { items: Record<string, unknown>[] }).items.find((b) => b.id === record.id);
    expect(item).toMatchObject({ stepCount: 10_000, cachedSteps: 0, attempts: 1 });
    expect(item).not.toHaveProperty('steps');
    expectWorkerAlive();
    await expectServesNext('after labels');
  });
});

describe('contexts over MAX_CONTEXT_ENTRIES', () => {
  const manyFiles = (n: number): Record<string, string> => {
    const files: Record<string, string> = { Dockerfile: 'FROM scratch\nCOPY . /\n' };
    for (let i = 0; i < n; i++) {
      files[`f/${i}`] = '';
    }
    return files;
  };

  it('an upload is refused by the API with 413 naming the limit', async () => {
    const t0 = Date.now();
    const res = await submitBuild(stack.api.url, manyFiles(MAX_CONTEXT_ENTRIES + 10));
    table.push({
      case: `upload of ${MAX_CONTEXT_ENTRIES + 12} entries`,
      outcome: `${res.status} ${(res.body as { message?: string }).message ?? ''}`,
      seconds: ((Date.now() - t0) / 1000).toFixed(1),
    });
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({
      code: 'CONTEXT_TOO_LARGE',
      message: `build context holds more than ${MAX_CONTEXT_ENTRIES} entries (the limit MAX_CONTEXT_ENTRIES)`,
    });
    await expectServesNext('after 413');
  });

  it('a stored context named by digest (never checked by the API) fails its build on the worker', async () => {
    // Stored through the registry's blob upload, then built with ?context=<digest>.
    const tar = await contextTar(manyFiles(MAX_CONTEXT_ENTRIES + 10));
    const digest = sha(tar);
    await request(stack.api.url)
      .post(`/v2/hostile/context/blobs/uploads/?digest=${digest}`)
      .set('Content-Type', 'application/octet-stream')
      .send(tar)
      .expect(201);
    const t0 = Date.now();
    const res = await request(stack.api.url).post('/api/v1/builds').query({ context: digest }).expect(202);
    const record = await pollBuild(
      stack.api.url,
      (res.body as { id: string }).id,
      ['succeeded', 'failed'],
      60_000,
    );
    table.push({
      case: 'stored context over the limit',
      outcome: `${record.state}: ${record.error ?? ''}`,
      seconds: ((Date.now() - t0) / 1000).toFixed(1),
    });
    expect(record.state).toBe('failed');
    expect(record.error).toBe(
      `build context holds more than ${MAX_CONTEXT_ENTRIES} entries (MAX_CONTEXT_ENTRIES)`,
    );
    expect(record.attempts).toBe(1);
    expectWorkerAlive();
    await expectServesNext('after worker-side entry limit');
  });
});

describe('commit changes doubling a variable', () => {
  it('fail the commit naming the change and the limit; the worker stays up', async () => {
    const dir = stack.dataDir;
    const rootfs = join(dir, 'busybox.tar');
    execFileSync('bash', [BUSYBOX_FIXTURE, rootfs], { stdio: 'ignore' });
    await request(stack.api.url)
      .post('/api/v1/images/import?repository=hostile/base&tag=1')
      .set('Content-Type', 'application/x-tar')
      .send(readFileSync(rootfs))
      .expect(201);
    const created = await request(stack.api.url)
      .post('/api/v1/containers')
      .send({ image: 'hostile/base:1', cmd: ['true'] })
      .expect(202);
    const id = (created.body as { id: string }).id;
    interface ContainerView {
      state: string;
      commits: { id: string; state: string; error: string | null }[];
    }
    const container = async (): Promise<ContainerView> =>
      (await request(stack.api.url).get(`/api/v1/containers/${id}`).expect(200)).body as ContainerView;
    const deadline = Date.now() + 60_000;
    while ((await container()).state !== 'exited' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
    }
    expect((await container()).state).toBe('exited');

    const changes = ['ENV A=x', ...Array.from({ length: 40 }, () => 'ENV A=$A$A')];
    const t0 = Date.now();
    const res = await request(stack.api.url)
      .post(`/api/v1/containers/${id}/commit`)
      .send({ repository: 'hostile/commit', changes })
      .expect(202);
    const commitId = (res.body as { commitId: string }).commitId;
    let commit: { state: string; error: string | null } | undefined;
    while (Date.now() < t0 + 60_000) {
      commit = (await container()).commits.find((c) => c.id === commitId);
      if (commit?.state === 'succeeded' || commit?.state === 'failed') {
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    table.push({
      case: 'commit changes ENV doubling x40',
      outcome: `${commit?.state ?? '?'}: ${commit?.error ?? ''}`.slice(0, 120),
      seconds: ((Date.now() - t0) / 1000).toFixed(1),
    });
    expect(commit?.state).toBe('failed');
    expect(commit?.error).toMatch(/^changes\[18\]: .*maxExpandedWordLength \(131072\)/);
    expectWorkerAlive();
    expect(workerPeakKb()).toBeLessThan(MAX_WORKER_PEAK_KB);
    await expectServesNext('after commit');
  });
});
