// Hostile paths (issue 13 items 1, 2 and 10's ADD part), through the real API and worker: a
// user-given name or path never reaches outside its root. Cache mount ids `..`, `../..`, `/`,
// a 300-character id each see an empty cache dir of their own and write nowhere else in
// DATA_DIR; a Dockerfile path through a symlinked directory to a host file fails with a clear
// error that holds neither the host file's content nor its path; a .dockerignore linked to a
// host file is not read; ADD of a gzipped tar bomb stops at MAX_ADD_UNPACKED_BYTES. After each
// case the worker process is alive and serves the next build.
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { opaqueName } from '@stratum/confine';
import { BuildEvent } from '@stratum/contracts';
import { busyboxContext, contextTar, readSse } from '@stratum/testing';
import { startStack, StackHandle } from '../support/stack';
import { alive, submitBuild, waitForBuild } from './chaos-support';

jest.setTimeout(180_000);

const ADD_LIMIT = 16 * 1024 * 1024;
const marker = randomBytes(6).toString('hex');
const hostDir = `/tmp/chaos-hostile-${marker}`;
const hostSecret = `FROM host-secret-${marker}`;
const hostPatterns = `keep.txt\n# host-patterns-${marker}\n`;

let stack: StackHandle;
let seq = 0;

async function submit(files: Buffer | Record<string, string | Buffer>, query: Record<string, string> = {}) {
  return submitBuild(stack.api.url, files, { t: `chaos/hostile-paths:${++seq}`, ...query });
}

async function run(files: Buffer | Record<string, string | Buffer>, query: Record<string, string> = {}) {
  const res = await submit(files, query);
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  return waitForBuild(stack.api.url, id, ['succeeded', 'failed'], 120_000);
}

async function logText(id: string): Promise<string> {
  const sse = await readSse(`${stack.api.url}/api/v1/builds/${id}/logs`, { timeoutMs: 30_000 });
  return sse.frames
    .map((f) => f.data as BuildEvent)
    .map((e) => (e.type === 'log' ? e.text : e.type === 'error' ? e.message : ''))
    .join('');
}

/** Every path under `dir`, links not followed (an extracted layer has links to `/`). */
function walk(dir: string, out: string[] = []): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    out.push(p);
    if (lstatSync(p).isDirectory()) {
      walk(p, out);
    }
  }
  return out;
}

/** The worker process is up and builds something new (not cached). */
async function servesNext(): Promise<void> {
  expect(alive(stack.worker!.process.pid!)).toBe(true);
  const rec = await run(busyboxContext(`RUN echo next-${++seq}-${marker} > /next`));
  expect(rec.state).toBe('succeeded');
}

beforeAll(async () => {
  rmSync(hostDir, { recursive: true, force: true });
  mkdirSync(hostDir, { recursive: true });
  writeFileSync(join(hostDir, 'secret'), `${hostSecret}\n`);
  writeFileSync(join(hostDir, 'patterns'), hostPatterns);
  stack = await startStack({
    name: 'hostile-paths',
    env: { MAX_ADD_UNPACKED_BYTES: String(ADD_LIMIT), JOB_ATTEMPTS: '3' },
  });
  // warm: busybox extracted once, so the cases below are quick
  expect((await run(busyboxContext('RUN true'))).state).toBe('succeeded');
}, 180_000);

afterAll(async () => {
  rmSync(hostDir, { recursive: true, force: true });
  await stack?.stop();
});

it('RUN --mount=type=cache ids ..  ../..  /  and a long id: an empty dir each, nothing else of DATA_DIR', async () => {
  const ids = ['..', '../..', '/', '.', 'x'.repeat(300)];
  const body = ids
    .map(
      (id, i) =>
        `RUN --mount=type=cache,id=${id},target=/c echo "seen${i}:[$(ls -A /c | tr '\\n' ' ')]" && echo ${marker} > /c/pwned${i}`,
    )
    .join('\n');
  const rec = await run(busyboxContext(body));
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  const log = await logText(rec.id);
  for (let i = 0; i < ids.length; i++) {
    expect(log).toContain(`seen${i}:[]`);
  }
  // What the steps wrote is in run-cache/<sha256 of the id> and nowhere else.
  const written = walk(stack.dataDir).filter((p) => /\/pwned\d$/.test(p));
  expect(written.sort()).toEqual(
    ids.map((id, i) => join(stack.dataDir, 'run-cache', opaqueName(id), `pwned${i}`)).sort(),
  );
  // and .locks: the (empty) lock files of those directories, `<name>` (in use) and
  // `<name>.seed` (made once, see RunCacheStore)
  expect(readdirSync(join(stack.dataDir, 'run-cache')).sort()).toEqual(
    ['.locks', ...ids.map(opaqueName)].sort(),
  );
  expect(readdirSync(join(stack.dataDir, 'run-cache', '.locks')).sort()).toEqual(
    ids.flatMap((id) => [opaqueName(id), `${opaqueName(id)}.seed`]).sort(),
  );
  await servesNext();
});

it('a Dockerfile path through a symlinked directory to a host file: clear error, host content never shown', async () => {
  // The API finds no such file in the tar (400); a context named by digest reaches the worker.
  const ctx = await contextTar(busyboxContext('RUN true'), {
    sub: hostDir,
    up: `../../../../../../../../../..${hostDir}`,
  });
  const direct = await submit(ctx, { dockerfile: 'sub/secret' });
  expect(direct.status).toBe(400);
  expect((direct.body as { code: string }).code).toBe('DOCKERFILE_MISSING');
  const uploaded = await run(ctx);
  expect(uploaded.state).toBe('succeeded');
  for (const path of ['sub/secret', 'up/secret']) {
    const rec = await run(Buffer.alloc(0), { context: uploaded.contextDigest, dockerfile: path });
    expect(rec.state).toBe('failed');
    expect(rec.error).toMatch(
      new RegExp(
        `Dockerfile path "${path.replace('/', '\\/')}" (goes through a symbolic link|leads outside its root)`,
      ),
    );
    expect(rec.attempts).toBe(1);
    const log = await logText(rec.id);
    for (const text of [rec.error ?? '', log]) {
      expect(text).not.toContain(`host-secret-${marker}`);
      expect(text).not.toContain(hostDir);
    }
  }
  await servesNext();
});

it('a .dockerignore linked to a host file is not read: a warning, nothing left out', async () => {
  const ctx = await contextTar(
    busyboxContext('COPY keep.txt /keep.txt\nRUN cat /keep.txt', { 'keep.txt': `kept-${marker}\n` }),
    {
      '.dockerignore': join(hostDir, 'patterns'),
    },
  );
  const rec = await run(ctx);
  expect(rec.state).toBe('succeeded');
  const log = await logText(rec.id);
  expect(log).toMatch(/warning: \.dockerignore "\.dockerignore" goes through a symbolic link.*not applied/);
  expect(log).toContain(`kept-${marker}`);
  expect(log).not.toContain(`host-patterns-${marker}`);
  await servesNext();
});

it('ADD of a gzipped tar bomb fails at MAX_ADD_UNPACKED_BYTES naming the limit and the line', async () => {
  // 64 MiB of zeros, 64 KiB gzipped: four times the limit.
  const bomb = gzipSync(await contextTar({ 'zeros.bin': Buffer.alloc(4 * ADD_LIMIT) }));
  expect(bomb.length).toBeLessThan(1024 * 1024);
  const started = Date.now();
  const rec = await run(busyboxContext('ADD bomb.tar.gz /bomb/', { 'bomb.tar.gz': bomb }));
  expect(rec.state).toBe('failed');
  expect(rec.error).toMatch(
    new RegExp(
      `^Dockerfile:4: ADD bomb\\.tar\\.gz: the archive unpacks to more than MAX_ADD_UNPACKED_BYTES \\(${ADD_LIMIT} bytes\\)`,
    ),
  );
  expect(rec.attempts).toBe(1);
  console.log(`tar bomb refused after ${Date.now() - started} ms: ${rec.error}`);
  await servesNext();
  await request(stack.api.url).get('/healthz').expect(200);
});
