// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated
// class (main.ts does the same).
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import request from 'supertest';
import { BuildEvent, BuildRecord } from '@stratum/contracts';
import { parseDockerfile } from '@stratum/dockerfile';
import { SELF_TEST_DOCKERFILE } from '@stratum/engine';
import { RedisKeys } from '@stratum/jobs';
import {
  busyboxContext,
  contextTar,
  readSse,
  RedisServerHandle,
  SseFrame,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
  pollBuild,
  filesUnder,
  asIs,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';

jest.setTimeout(60_000);

const MAX_CONTEXT_BYTES = 8 * 1024 * 1024;
const WORKER_ID = 'e2e-builds';

let redisServer: RedisServerHandle;
let redis: Redis;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle | null = null;

function env(): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID,
    WORKER_CONCURRENCY: '2',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    MAX_CONTEXT_BYTES: String(MAX_CONTEXT_BYTES),
    JOB_ATTEMPTS: '1',
  };
}

const blobs = (): string[] => filesUnder(join(dataDir, 'store', 'blobs')).sort();
const uploadTemps = (): string[] => filesUnder(join(dataDir, 'store', 'tmp'));
const buildCount = (): Promise<number> => redis.zcard(RedisKeys.buildIndex);

function overlayMountsUnder(dir: string): string[] {
  // mountinfo fields: id parent dev root mountpoint opts ... - fstype source superopts
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - overlay /.test(l))
    .map((l) => l.split(' ')[4].replace(/\\040/g, ' '))
    .filter((t) => t.startsWith(dir));
}

function runcContainers(): string {
  return execFileSync('runc', ['--root', join(dataDir, 'worker', WORKER_ID, 'runc'), 'list', '-q'], {
    encoding: 'utf8',
  }).trim();
}

async function submit(files: Record<string, string | Buffer>, query: Record<string, string> = {}) {
  const body = await contextTar(files);
  return request(api.url)
    .post('/api/v1/builds')
    .query(query)
    .set('content-type', 'application/x-tar')
    .send(body);
}

function waitForState(id: string, states: string[], timeoutMs: number): Promise<BuildRecord> {
  return pollBuild(api.url, id, states, timeoutMs);
}

/** A step's instruction without BuildKit's `[stage] ` prefix. */
const bare = (name: string): string => name.replace(/^\[[^\]]*\] /, '');

const events = (frames: SseFrame[]): BuildEvent[] => frames.map((f) => f.data as BuildEvent);

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-e2e-builds-'));
  api = await startApiServer(testConfig(env()));
});

afterAll(async () => {
  await worker?.stop(10_000);
  await api?.close();
  redis?.disconnect();
  await redisServer?.stop();
  if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('bad requests leave nothing behind', () => {
  let blobsBefore: string[];
  let buildsBefore: number;

  beforeEach(async () => {
    blobsBefore = blobs();
    buildsBefore = await buildCount();
  });

  afterEach(async () => {
    // a refused upload may still be finishing its write to the store: give it a moment
    await new Promise((r) => setTimeout(r, 500));
    expect(blobs()).toEqual(blobsBefore);
    expect(await buildCount()).toBe(buildsBefore);
    // upload temp files go away once the request has been answered
    for (let i = 0; i < 20 && uploadTemps().length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(uploadTemps()).toEqual([]);
  });

  it('empty body: 400 CONTEXT_MISSING', async () => {
    const res = await request(api.url)
      .post('/api/v1/builds')
      .set('content-type', 'application/x-tar')
      .send(Buffer.alloc(0));
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ statusCode: 400, code: 'CONTEXT_MISSING' });
    expect(res.body.message).toMatch(/context/i);
  });

  it('not a tar: 400 CONTEXT_INVALID', async () => {
    const res = await request(api.url)
      .post('/api/v1/builds')
      .set('content-type', 'application/x-tar')
      .timeout({ response: 5000 })
      .send(Buffer.from('this is certainly not a tar archive\n'.repeat(100)));
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'CONTEXT_INVALID' });
    expect(res.body.message).toMatch(/tar/);
  });

  it('a context holding a device node: 400 CONTEXT_INVALID naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stratum-e2e-devctx-'));
    try {
      execFileSync(
        'sh',
        ['-c', 'printf "FROM scratch\\n" > Dockerfile && mknod sda b 8 0 && tar -cf ctx.tar Dockerfile sda'],
        {
          cwd: dir,
        },
      );
      const res = await request(api.url)
        .post('/api/v1/builds')
        .set('content-type', 'application/x-tar')
        .send(readFileSync(join(dir, 'ctx.tar')));
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ code: 'CONTEXT_INVALID' });
      expect(res.body.message).toMatch(/device node \(sda\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a context without the Dockerfile: 400 DOCKERFILE_MISSING', async () => {
    const res = await submit({ 'README.md': 'no dockerfile here' });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'DOCKERFILE_MISSING' });
    expect(res.body.message).toMatch(/Dockerfile/);
  });

  it('a ?dockerfile= that does not exist in the context: 400 DOCKERFILE_MISSING naming it', async () => {
    const res = await submit({ Dockerfile: 'FROM scratch\n' }, { dockerfile: 'build/Dockerfile.prod' });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'DOCKERFILE_MISSING' });
    expect(res.body.message).toContain('build/Dockerfile.prod');
  });

  it('dockerfile=../x: 400 naming dockerfile', async () => {
    const res = await submit({ Dockerfile: 'FROM scratch\n' }, { dockerfile: '../x' });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('BAD_REQUEST');
    expect(res.body.message).toMatch(/dockerfile/);
  });

  it('bad buildargs JSON: 400 naming buildargs', async () => {
    const res = await submit({ Dockerfile: 'FROM scratch\n' }, { buildargs: '{not json' });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('BAD_REQUEST');
    expect(res.body.message).toMatch(/buildargs/);
    const res2 = await submit({ Dockerfile: 'FROM scratch\n' }, { buildargs: '{"A": 1}' });
    expect(res2.status).toBe(400);
    expect(res2.body.message).toMatch(/buildargs/);
  });

  it('a bad tag: 400 naming t', async () => {
    const res = await submit({ Dockerfile: 'FROM scratch\n' }, { t: 'Not A Tag!' });
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/\bt\b/);
  });

  it('a context above MAX_CONTEXT_BYTES with Content-Length: 413 CONTEXT_TOO_LARGE', async () => {
    const body = await contextTar({
      Dockerfile: 'FROM scratch\n',
      'big.bin': Buffer.alloc(MAX_CONTEXT_BYTES + 1024, 1),
    });
    const res = await request(api.url)
      .post('/api/v1/builds')
      .set('content-type', 'application/x-tar')
      .send(body);
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ code: 'CONTEXT_TOO_LARGE' });
    expect(res.body.message).toContain(String(MAX_CONTEXT_BYTES));
  });

  it('a context above MAX_CONTEXT_BYTES sent chunked: 413 CONTEXT_TOO_LARGE', async () => {
    const body = await contextTar({
      Dockerfile: 'FROM scratch\n',
      'big.bin': Buffer.alloc(MAX_CONTEXT_BYTES + 1024, 1),
    });
    const url = new URL('/api/v1/builds', api.url);
    const res = await new Promise<{ status: number; body: { code?: string; message?: string } }>(
      (resolve, reject) => {
        const req = httpRequest(
          url,
          {
            method: 'POST',
            headers: { 'content-type': 'application/x-tar', 'transfer-encoding': 'chunked' },
          },
          (r) => {
            let text = '';
            r.setEncoding('utf8');
            r.on('data', (d: string) => (text += d));
            r.on('end', () =>
              resolve({ status: r.statusCode ?? 0, body: JSON.parse(text) as { code?: string } }),
            );
          },
        );
        // the server may answer and close before the whole body is written
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') {
            reject(err);
          }
        });
        (async () => {
          for (let off = 0; off < body.length; off += 64 * 1024) {
            if (req.destroyed) {
              return;
            }
            if (!req.write(body.subarray(off, off + 64 * 1024))) {
              await new Promise((r) => req.once('drain', r));
            }
          }
          req.end();
        })().catch(reject);
      },
    );
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('CONTEXT_TOO_LARGE');
    expect(res.body.message).toContain(String(MAX_CONTEXT_BYTES));
  });

  it('unknown build id: 404 BUILD_UNKNOWN (record, logs and cancel)', async () => {
    const id = '8d6f2c1e-4b7a-4c1d-9e2f-0a1b2c3d4e5f';
    for (const res of [
      await request(api.url).get(`/api/v1/builds/${id}`),
      await request(api.url).get(`/api/v1/builds/${id}/logs`),
      await request(api.url).delete(`/api/v1/builds/${id}`),
    ]) {
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ code: 'BUILD_UNKNOWN' });
      expect(res.body.message).toContain(id);
    }
  });

  it('a build id that is not a uuid: 400', async () => {
    for (const res of [
      await request(api.url).get('/api/v1/builds/not-a-uuid'),
      await request(api.url).get('/api/v1/builds/not-a-uuid/logs'),
      await request(api.url).delete('/api/v1/builds/not-a-uuid'),
    ]) {
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/uuid/i);
    }
  });

  it('bad list queries: 400 naming the field', async () => {
    const a = await request(api.url).get('/api/v1/builds').query({ limit: '0' });
    expect(a.status).toBe(400);
    expect(a.body.message).toMatch(/limit/);
    const b = await request(api.url).get('/api/v1/builds').query({ state: 'exploded' });
    expect(b.status).toBe(400);
    expect(b.body.message).toMatch(/state/);
  });
});

describe('builds with a real worker', () => {
  let okId: string;
  let okFrames: SseFrame[];

  beforeAll(async () => {
    worker = await startWorkerProcess(env());
  });

  it('the worker built its self-test image before it said it was ready', () => {
    const out = worker?.output() ?? '';
    const selfTest = /self-test build: (\d+) steps in \d+ ms/.exec(out);
    expect(out).not.toMatch(/self-test build failed/);
    expect(Number(selfTest?.[1])).toBe(parseDockerfile(SELF_TEST_DOCKERFILE).stages[0].instructions.length);
    expect(selfTest?.index).toBeLessThan(out.search(/ready \(pid \d+\)/));
  });

  it('submits a context: 202 with id, url, logsUrl and Location', async () => {
    const res = await submit(
      busyboxContext('RUN echo hello-from-run && echo to-stderr >&2\nRUN mkdir /out && echo x > /out/f\n'),
      {
        t: 'e2e/ok:1',
      },
    );
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ state: 'queued' });
    okId = res.body.id as string;
    expect(okId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.url).toBe(`/api/v1/builds/${okId}`);
    expect(res.body.logsUrl).toBe(`/api/v1/builds/${okId}/logs`);
    expect(res.body.contextDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(res.headers.location).toBe(res.body.url);
  });

  it('streams state, step, log and result events in order, ending with succeeded', async () => {
    const sse = await readSse(`${api.url}/api/v1/builds/${okId}/logs`, { timeoutMs: 45_000 });
    expect(sse.status).toBe(200);
    expect(sse.contentType).toMatch(/^text\/event-stream/);
    okFrames = sse.frames;
    const ev = events(okFrames);
    for (const f of okFrames) {
      expect(f.id).toMatch(/^\d+-\d+$/);
      expect(f.event).toBe((f.data as BuildEvent).type);
    }
    const states = ev.flatMap((e) => (e.type === 'state' ? [e.state] : []));
    expect(states).toEqual(['queued', 'running', 'succeeded']);
    expect(ev[0]).toMatchObject({ type: 'state', state: 'queued' });
    expect(ev[1]).toMatchObject({ type: 'state', state: 'running' });
    expect(ev[ev.length - 1]).toMatchObject({ type: 'state', state: 'succeeded' });
    expect(ev[ev.length - 2].type).toBe('result');
    const firstStep = ev.findIndex((e) => e.type === 'step');
    const firstLog = ev.findIndex((e) => e.type === 'log' && e.text.includes('hello-from-run'));
    expect(firstStep).toBeGreaterThan(1);
    expect(firstLog).toBeGreaterThan(firstStep);
    const logs = ev.flatMap((e) => (e.type === 'log' ? [e] : []));
    expect(logs.some((l) => l.stream === 'stdout' && l.text.includes('hello-from-run'))).toBe(true);
    expect(logs.some((l) => l.stream === 'stderr' && l.text.includes('to-stderr'))).toBe(true);
    const runStep = logs.find((l) => l.text.includes('hello-from-run'))?.step;
    expect(typeof runStep).toBe('number');
    // every step that ran reported running before it finished
    const steps = ev.flatMap((e) => (e.type === 'step' ? [e.step] : []));
    for (const s of steps.filter((x) => x.status === 'done')) {
      const running = steps.findIndex((x) => x.index === s.index && x.status === 'running');
      expect(running).toBeGreaterThanOrEqual(0);
      expect(running).toBeLessThan(steps.indexOf(s));
    }
    expect(new Set(steps.map((s) => bare(s.name)))).toEqual(
      new Set([
        'ADD rootfs.tar /',
        'ENV PATH=/bin',
        'RUN echo hello-from-run && echo to-stderr >&2',
        'RUN mkdir /out && echo x > /out/f',
      ]),
    );
  });

  it('records steps with timings and the image digest', async () => {
    const res = await request(api.url).get(`/api/v1/builds/${okId}`);
    expect(res.status).toBe(200);
    const rec = res.body as BuildRecord;
    expect(rec).toMatchObject({ id: okId, state: 'succeeded', tags: ['e2e/ok:1'], error: null, attempts: 1 });
    expect(rec.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const result = events(okFrames).find((e) => e.type === 'result');
    expect(result).toEqual({ type: 'result', imageDigest: rec.imageDigest });
    expect(rec.startedAt).not.toBeNull();
    expect(rec.finishedAt).not.toBeNull();
    expect(Date.parse(rec.finishedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(rec.startedAt ?? ''));
    expect(rec.steps.map((s) => s.index)).toEqual(rec.steps.map((_, i) => i));
    expect(rec.steps.map((s) => bare(s.name))).toEqual([
      'ADD rootfs.tar /',
      'ENV PATH=/bin',
      'RUN echo hello-from-run && echo to-stderr >&2',
      'RUN mkdir /out && echo x > /out/f',
    ]);
    for (const s of rec.steps) {
      expect(['done', 'cached']).toContain(s.status);
      expect(typeof s.startedAt).toBe('string');
      expect(typeof s.finishedAt).toBe('string');
      expect(typeof s.durationMs).toBe('number');
      expect(s.durationMs).toBeGreaterThanOrEqual(0);
    }
    const run = rec.steps[3];
    expect(run.layerSize).toBeGreaterThan(0);
  });

  it('replays the same events after completion, and resumes after Last-Event-ID', async () => {
    const replay = await readSse(`${api.url}/api/v1/builds/${okId}/logs`, { timeoutMs: 10_000 });
    expect(replay.frames).toEqual(okFrames);
    const cut = 3;
    const t = Date.now();
    const resumed = await readSse(`${api.url}/api/v1/builds/${okId}/logs`, {
      lastEventId: okFrames[cut - 1].id ?? '',
      timeoutMs: 10_000,
    });
    expect(resumed.frames).toEqual(okFrames.slice(cut));
    expect(Date.now() - t).toBeLessThan(3000);
  });

  it('a failing RUN ends failed, with an error naming the Dockerfile line', async () => {
    const res = await submit(busyboxContext('RUN echo before-fail\nRUN exit 3\nRUN echo never\n'));
    expect(res.status).toBe(202);
    const sse = await readSse(`${api.url}${res.body.logsUrl as string}`, { timeoutMs: 45_000 });
    const ev = events(sse.frames);
    expect(ev[ev.length - 1]).toMatchObject({ type: 'state', state: 'failed' });
    const error = ev.find((e) => e.type === 'error');
    expect(error).toBeDefined();
    const rec = (await request(api.url).get(res.body.url as string)).body as BuildRecord;
    expect(rec.state).toBe('failed');
    expect(rec.imageDigest).toBeNull();
    expect(rec.error).toMatch(/5/); // RUN exit 3 is line 5 (FROM, ADD, ENV, RUN echo, RUN exit 3)
    expect(rec.error).toMatch(/Dockerfile:5|line 5/);
    expect(rec.error).toMatch(/exit|code|3/);
    expect(rec.steps.find((s) => bare(s.name) === 'RUN exit 3')?.status).toBe('failed');
    expect(rec.steps.some((s) => bare(s.name) === 'RUN echo never' && s.status === 'done')).toBe(false);
    expect(ev.some((e) => e.type === 'result')).toBe(false);
  });

  it('cancels a running build: it ends cancelled within seconds, leaving no mount or container', async () => {
    const res = await submit(busyboxContext('RUN echo sleeping && sleep 60\n'));
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    // wait until the RUN step is running (its output has appeared)
    await readSse(`${api.url}/api/v1/builds/${id}/logs`, {
      timeoutMs: 30_000,
      onFrame: (f) => {
        const e = f.data as BuildEvent;
        return e.type === 'log' && e.text.includes('sleeping');
      },
    });
    const started = Date.now();
    const del = await request(api.url).delete(`/api/v1/builds/${id}`);
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ id });
    const rec = await waitForState(id, ['cancelled', 'failed', 'succeeded'], 15_000);
    expect(rec.state).toBe('cancelled');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(rec.finishedAt).not.toBeNull();
    const ev = events((await readSse(`${api.url}/api/v1/builds/${id}/logs`, { timeoutMs: 10_000 })).frames);
    expect(ev[ev.length - 1]).toMatchObject({ type: 'state', state: 'cancelled' });
    // the worker cleans up before it records the state, give it a moment anyway
    for (let i = 0; i < 20 && (overlayMountsUnder(dataDir).length > 0 || runcContainers() !== ''); i++) {
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(overlayMountsUnder(dataDir)).toEqual([]);
    expect(runcContainers()).toBe('');

    const again = await request(api.url).delete(`/api/v1/builds/${id}`);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'BUILD_FINISHED' });
    expect(again.body.message).toContain('cancelled');
  });

  it('cancel of a succeeded build: 409 BUILD_FINISHED', async () => {
    const res = await request(api.url).delete(`/api/v1/builds/${okId}`);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: 'BUILD_FINISHED' });
  });

  it('lists builds newest first, paged and filtered by state', async () => {
    const all = await request(api.url).get('/api/v1/builds').query({ limit: '50' });
    expect(all.status).toBe(200);
    expect(all.body.total).toBe(3);
    const items = all.body.items as BuildRecord[];
    expect(items[items.length - 1].id).toBe(okId);
    const created = items.map((b) => Date.parse(b.createdAt));
    expect([...created].sort((a, b) => b - a)).toEqual(created);

    const p1 = await request(api.url).get('/api/v1/builds').query({ offset: '0', limit: '2' });
    const p2 = await request(api.url).get('/api/v1/builds').query({ offset: '2', limit: '2' });
    expect(p1.body).toMatchObject({ offset: 0, limit: 2, total: 3 });
    expect([...p1.body.items, ...p2.body.items].map((b: BuildRecord) => b.id)).toEqual(
      items.map((b) => b.id),
    );

    const ok = await request(api.url).get('/api/v1/builds').query({ state: 'succeeded' });
    expect((ok.body.items as BuildRecord[]).map((b) => b.id)).toEqual([okId]);
    expect(ok.body.total).toBe(1);
  });

  // After the list test, which counts the builds made before it.
  it("takes a context labelled as a form (curl --data-binary) over the form parser's 100 KB", async () => {
    const body = await contextTar({
      Dockerfile: 'FROM scratch\nCOPY big /big\n',
      big: Buffer.alloc(300_000, 7),
    });
    const res = await request(api.url)
      .post('/api/v1/builds')
      .set('content-type', 'application/x-www-form-urlencoded')
      .serialize(asIs)
      .send(body);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 202, body: { state: 'queued' } });
    const done = await waitForState(res.body.id as string, ['succeeded', 'failed'], 30_000);
    expect(done.state).toBe('succeeded');
  });

  it('build state and logs survive an API restart', async () => {
    await api.close();
    api = await startApiServer(testConfig(env()));
    const rec = await request(api.url).get(`/api/v1/builds/${okId}`);
    expect(rec.status).toBe(200);
    expect(rec.body).toMatchObject({ id: okId, state: 'succeeded' });
    const replay = await readSse(`${api.url}/api/v1/builds/${okId}/logs`, { timeoutMs: 10_000 });
    expect(replay.frames).toEqual(okFrames);
  });

  it('?context=<digest> builds a stored context without a body; an unknown one is 400 CONTEXT_MISSING', async () => {
    const original = (await request(api.url).get(`/api/v1/builds/${okId}`)).body as BuildRecord;
    const again = await request(api.url)
      .post('/api/v1/builds')
      .query({ t: 'e2e/ok:again', context: original.contextDigest });
    expect(again.status).toBe(202);
    expect(again.body.contextDigest).toBe(original.contextDigest);
    const rec = await waitForState(again.body.id as string, ['succeeded', 'failed'], 45_000);
    expect(rec).toMatchObject({ state: 'succeeded', contextSize: original.contextSize });
    expect(rec.imageDigest).toBe(original.imageDigest);
    expect(rec.steps.every((s) => s.status === 'cached')).toBe(true);
    const unknown = await request(api.url)
      .post('/api/v1/builds')
      .query({ t: 'e2e/ok:unknown', context: `sha256:${'0'.repeat(64)}` });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ code: 'CONTEXT_MISSING' });
  });

  it('?context=<digest> naming a blob larger than MAX_CONTEXT_BYTES is 413, as an upload of it would be', async () => {
    const original = (await request(api.url).get(`/api/v1/builds/${okId}`)).body as BuildRecord;
    const small = await startApiServer(
      testConfig({ ...env(), MAX_CONTEXT_BYTES: String(original.contextSize - 1) }),
    );
    try {
      const res = await request(small.url)
        .post('/api/v1/builds')
        .query({ t: 'e2e/ok:too-large', context: original.contextDigest });
      expect(res.status).toBe(413);
      expect(res.body).toMatchObject({ code: 'CONTEXT_TOO_LARGE' });
      expect(res.body.message).toContain(original.contextDigest);
    } finally {
      await small.close();
    }
  });

  it('RUN --network=host is refused unless the operator allows it, naming the line', async () => {
    const res = await submit(busyboxContext('RUN --network=host echo on-the-host-network\n'));
    expect(res.status).toBe(202);
    const rec = await waitForState(res.body.id as string, ['succeeded', 'failed'], 45_000);
    expect(rec.state).toBe('failed');
    expect(rec.error).toMatch(/Dockerfile:4/);
    expect(rec.error).toMatch(/--network=host is not allowed/);
  });
});
