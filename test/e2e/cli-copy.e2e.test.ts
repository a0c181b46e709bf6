// COPY --exclude, COPY --parents, COPY --link and build checks through the CLI, the API and a
// worker. The trees are the Dockerfile reference's examples
// (https://docs.docker.com/reference/dockerfile/#copy---exclude, #copy---parents, #copy---link);
// Debian's Buildah (1.28) supports neither --exclude nor --parents, so these follow the
// reference (and BuildKit's own tests) instead of a Buildah comparison.
// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { rmSync } from 'node:fs';
import request from 'supertest';
import { busyboxContext, CliResult, runCli, writeTree } from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(90_000);

let stack: StackHandle;
const dirs: string[] = [];

function stratum(args: string[]): Promise<CliResult> {
  return runCli(args, { url: stack.api.url, timeoutMs: 60_000 });
}

function contextDir(files: Record<string, string | Buffer>): string {
  const dir = writeTree(files);
  dirs.push(dir);
  return dir;
}

/** The lines a `RUN` printed (`#N text`), without the step markers. */
const printed = (stdout: string, marker: string): string[] => {
  const lines = stdout.split('\n').map((l) => l.replace(/^#\d+ /, ''));
  const at = lines.indexOf(`${marker}-begin`);
  const end = lines.indexOf(`${marker}-end`);
  return at < 0 || end < 0 ? [] : lines.slice(at + 1, end);
};

const layerDigests = async (ref: string): Promise<string[]> => {
  const res = await request(stack.api.url).get(`/api/v1/images/${encodeURIComponent(ref)}`);
  expect(res.status).toBe(200);
  return (res.body as { layers: { digest: string }[] }).layers.map((l) => l.digest);
};

beforeAll(async () => {
  stack = await startStack({ name: 'cli-copy', env: { WORKER_CONCURRENCY: '2' } });
});

afterAll(async () => {
  await stack?.stop();
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
  }
});

it('COPY --exclude and COPY --parents give the reference trees', async () => {
  const dir = contextDir(
    busyboxContext(
      [
        'COPY --exclude=*.txt --exclude=*.md hom* /mydir/',
        'COPY ./x/a.txt ./y/a.txt /no_parents/',
        'COPY --parents ./x/a.txt ./y/a.txt /parents/',
        'COPY --parents ./x/./y/*.txt /pivot/',
        'RUN echo tree-begin && find /mydir /no_parents /parents /pivot | sort && echo tree-end',
      ].join('\n') + '\n',
      {
        'home/a.txt': 'x',
        'home/b.md': 'x',
        'home/c.go': 'c',
        'x/a.txt': 'xa',
        'y/a.txt': 'ya',
        'x/y/a.txt': 'xya',
        'x/y/b.txt': 'xyb',
      },
    ),
  );
  const res = await stratum(['build', '-t', 'cli-copy/tree:1', dir]);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  expect(printed(res.stdout, 'tree')).toEqual([
    '/mydir',
    '/mydir/c.go',
    '/no_parents',
    '/no_parents/a.txt',
    '/parents',
    '/parents/x',
    '/parents/x/a.txt',
    '/parents/y',
    '/parents/y/a.txt',
    '/pivot',
    '/pivot/y',
    '/pivot/y/a.txt',
    '/pivot/y/b.txt',
  ]);
});

it('a rebuild after only the base changed reuses the COPY --link layer: same digest', async () => {
  const linked = (base: string): Record<string, string | Buffer> => ({
    ...busyboxContext('', { 'base.txt': base, 'app/main.txt': 'main' }),
    Dockerfile: [
      'FROM scratch AS base',
      'ADD rootfs.tar /',
      'COPY base.txt /base.txt',
      'FROM base',
      'COPY --link app/ /app/',
    ].join('\n'),
  });
  const first = await stratum(['build', '-t', 'cli-copy/link:1', contextDir(linked('one'))]);
  expect(first.code).toBe(0);
  const second = await stratum(['build', '-t', 'cli-copy/link:2', contextDir(linked('two'))]);
  expect(second.code).toBe(0);
  // the base's COPY ran again; the --link COPY was replayed from the cache
  expect(second.stdout).toMatch(/#\d+ \[\d+\] \[base\] COPY base\.txt \/base\.txt\n#\d+ DONE/);
  expect(second.stdout).toMatch(/#\d+ \[\d+\] \[stage-1\] COPY --link app\/ \/app\/\n#\d+ CACHED/);
  const a = await layerDigests('cli-copy/link:1');
  const b = await layerDigests('cli-copy/link:2');
  expect(a).toHaveLength(b.length);
  expect(b[b.length - 2]).not.toBe(a[a.length - 2]);
  expect(b[b.length - 1]).toBe(a[a.length - 1]);
});

it('stratum build --check lists the checks with their lines and builds nothing', async () => {
  const dir = contextDir({ Dockerfile: 'FROM alpine as base\nCMD echo hi\n' });
  const before = (await request(stack.api.url).get('/api/v1/builds?limit=200')).body as {
    total?: number;
    items?: unknown[];
  };
  const res = await stratum(['build', '--check', dir]);
  expect(res.code).toBe(1);
  expect(res.stdout).toContain('Check complete, 2 warnings have been found!');
  expect(res.stdout).toContain(
    "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\nDockerfile:1\n",
  );
  expect(res.stdout).toContain('JSONArgsRecommended');
  expect(res.stdout).toContain('   2 | >>> CMD echo hi');
  const after = (await request(stack.api.url).get('/api/v1/builds?limit=200')).body as {
    total?: number;
    items?: unknown[];
  };
  expect(after).toEqual(before);

  const clean = await stratum(['build', '--check', contextDir({ Dockerfile: 'FROM alpine\nCMD ["sh"]\n' })]);
  expect(clean.code).toBe(0);
  expect(clean.stdout).toBe('Check complete, no warnings found.\n');

  // a Dockerfile that does not parse: 400 with its line, exit 2
  const bad = await stratum([
    'build',
    '--check',
    contextDir({ Dockerfile: 'FROM alpine\nHEALTHCHECK --retries=-1 CMD x\n' }),
  ]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('line 2: --retries cannot be negative (-1)');
});

it('the API answers the checks as JSON', async () => {
  const res = await request(stack.api.url)
    .post('/api/v1/builds/check?buildargs=%7B%7D')
    .set('content-type', 'text/plain')
    .send('# check=error=true\nFROM alpine\nWORKDIR app\n');
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({
    warnings: [{ rule: 'WorkdirRelativePath', line: 3, endLine: 3 }],
    config: { error: true },
    error: 'lint violation found for rules: WorkdirRelativePath',
  });
});
