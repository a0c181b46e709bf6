// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { busyboxContext, CliResult, runCli, writeTree } from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(60_000);

let stack: StackHandle;
const dirs: string[] = [];

/** Runs the `stratum` command (its launcher, then the compiled CLI) against the test API. */
function stratum(
  args: string[],
  timeoutMs = 45_000,
  extraEnv: Record<string, string> = {},
): Promise<CliResult> {
  return runCli(args, { url: stack.api.url, timeoutMs, env: extraEnv });
}

function contextDir(files: Record<string, string | Buffer>): string {
  const dir = writeTree(files);
  dirs.push(dir);
  return dir;
}

const buildIdOf = (out: string): string => {
  const m = /=> build ([0-9a-f-]{36})/.exec(out);
  if (m === null) {
    throw new Error(`no build id in:\n${out}`);
  }
  return m[1];
};

beforeAll(async () => {
  stack = await startStack({
    name: 'cli',
    env: { WORKER_CONCURRENCY: '2', WORKER_SHUTDOWN_TIMEOUT_MS: '3000' },
  });
});

afterAll(async () => {
  await stack?.stop();
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
  }
});

let okId: string;

it('stratum build -t cli/test:1 DIR exits 0 and prints step progress', async () => {
  const dir = contextDir(busyboxContext('RUN echo cli-says-hello\n'));
  const res = await stratum(['build', '-t', 'cli/test:1', dir]);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  okId = buildIdOf(res.stdout);
  expect(res.stdout).toMatch(/=> sending build context \(\d+ entries\)/);
  expect(res.stdout).toMatch(/#\d+ \[\d+\] .*RUN echo cli-says-hello/);
  expect(res.stdout).toMatch(/#\d+ cli-says-hello/);
  expect(res.stdout).toMatch(/#\d+ DONE \d+\.\ds/);
  expect(res.stdout).toContain('=> build succeeded');
  expect(res.stdout).toMatch(/=> done: sha256:[0-9a-f]{64} cli\/test:1/);
  const rec = (await request(stack.api.url).get(`/api/v1/builds/${okId}`)).body as BuildRecord;
  expect(rec).toMatchObject({ state: 'succeeded', tags: ['cli/test:1'] });
});

it('a failing build exits non-zero and prints the error', async () => {
  const dir = contextDir(busyboxContext('RUN echo about-to-fail && exit 3\n'));
  const res = await stratum(['build', '-t', 'cli/fail:1', dir]);
  expect(res.code).not.toBe(0);
  expect(res.stdout).toContain('about-to-fail');
  expect(res.stderr).toMatch(/build failed: .+/);
  expect(res.stderr).toMatch(/Dockerfile:4|line 4/);
});

it('.dockerignore keeps a big file out of the context', async () => {
  const big = Buffer.alloc(3 * 1024 * 1024, 7);
  const dir = contextDir(
    busyboxContext('COPY keep.txt /keep.txt\nRUN test ! -e /big.bin && cat /keep.txt\n', {
      'big.bin': big,
      'keep.txt': 'kept\n',
      '.dockerignore': 'big.bin\n',
    }),
  );
  const res = await stratum(['build', '-t', 'cli/ignore:1', dir]);
  expect(res.code).toBe(0);
  const id = buildIdOf(res.stdout);
  const rec = (await request(stack.api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord;
  const rootfs = readFileSync(join(dir, 'rootfs.tar')).length;
  expect(rec.contextSize).toBeGreaterThan(rootfs);
  expect(rec.contextSize).toBeLessThan(rootfs + 64 * 1024); // the 3 MiB file was not sent
  expect(res.stdout).toContain('kept');
});

it('a missing context directory or Dockerfile is a clear error, exit 2', async () => {
  const dir = contextDir({ 'a.txt': 'no dockerfile' });
  const res = await stratum(['build', dir]);
  expect(res.code).toBe(2);
  expect(res.stderr).toMatch(/^stratum: .*Dockerfile/);
});

it('the launcher keeps Node from loading NODE_EXTRA_CA_CERTS at start (the CLI loads it for https only)', async () => {
  // Node warns when it cannot load the file, before any JavaScript runs: no warning, not read.
  const res = await stratum(['builds'], 45_000, { NODE_EXTRA_CA_CERTS: '/nonexistent/extra-ca.pem' });
  expect(res.code).toBe(0);
  expect(res.stderr).not.toMatch(/extra certs/);
  expect(res.stdout).toMatch(/^ID\s+STATE/);
});

it('stratum builds lists the builds', async () => {
  const res = await stratum(['builds']);
  expect(res.code).toBe(0);
  const lines = res.stdout.trim().split('\n');
  expect(lines[0]).toMatch(/^ID\s+STATE\s+CREATED\s+SOURCE\s+TAGS$/);
  const row = lines.find((l) => l.startsWith(okId));
  expect(row).toMatch(/succeeded .*cli\/test:1$/);
  expect(res.stdout).toMatch(/\(3 of 3\)\n$/);
});

it('stratum logs ID replays the build log and exits with its status', async () => {
  const res = await stratum(['logs', okId]);
  expect(res.code).toBe(0);
  expect(res.stdout).toContain('=> build queued');
  expect(res.stdout).toContain('=> build running');
  expect(res.stdout).toMatch(/#\d+ cli-says-hello/);
  expect(res.stdout).toMatch(/=> image sha256:[0-9a-f]{64}/);
  expect(res.stdout.trim().split('\n').pop()).toBe('=> build succeeded');
});

it('stratum logs of an unknown build fails with the API message', async () => {
  const res = await stratum(['logs', '8d6f2c1e-4b7a-4c1d-9e2f-0a1b2c3d4e5f']);
  expect(res.code).toBe(2);
  expect(res.stderr).toMatch(/no build with id/);
});

it('an unchanged context is named by its digest, not sent again; a changed one is sent', async () => {
  const cache = contextDir({});
  const dir = contextDir(busyboxContext('COPY a.txt /a.txt\nRUN cat /a.txt\n', { 'a.txt': 'one\n' }));
  const run = (): Promise<CliResult> =>
    stratum(['build', '-t', 'cli/reuse:1', dir], 45_000, { XDG_CACHE_HOME: cache });
  const first = await run();
  expect(first.code).toBe(0);
  expect(first.stdout).toMatch(/=> sending build context/);
  const second = await run();
  expect(second.code).toBe(0);
  expect(second.stdout).toMatch(/=> build context unchanged \(sha256:[0-9a-f]{64}\), not sent again/);
  expect(second.stdout).not.toMatch(/=> sending build context/);
  writeFileSync(join(dir, 'a.txt'), 'two\n');
  const third = await run();
  expect(third.code).toBe(0);
  expect(third.stdout).toMatch(/=> sending build context/);
  expect(third.stdout).toMatch(/#\d+ two/);
});
