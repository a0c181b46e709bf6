// Build secrets end to end: the CLI's --secret (a file and an environment variable) through the
// API into Redis (sealed), to the worker, onto a per-step tmpfs; then a search for the secret's
// bytes in every layer and the config (skopeo + umoci), the Redis append-only file, the build
// record and the log: nothing. Plus the cache (a changed value keeps it), a missing required
// secret, the size limit and a server without AUTH_SECRET.
import 'reflect-metadata';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  buildSecretBundleKeys,
  busyboxContext,
  CliResult,
  requireTools,
  runCli,
  writeTree,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(120_000);

const execFileP = promisify(execFile);

const FILE_SECRET = 'npm-token-FILE-7f3a9c2e51';
const ENV_SECRET = 'env-token-ENV-b81d44e0c6';
const DOCKERFILE = [
  'RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc',
  'RUN --mount=type=secret,id=tok,env=TOKEN sh -c "echo token=$TOKEN; echo ${#TOKEN} > /toklen"',
  'RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,mode=0440 stat -c %a /root/.npmrc > /mode',
].join('\n');

let stack: StackHandle;
const dirs: string[] = [];

function stratum(args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, {
    url: stack.api.url,
    timeoutMs: 90_000,
    env: { STRATUM_NO_CONTEXT_CACHE: '1', ...extraEnv },
  });
}

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

const buildIdOf = (out: string): string => {
  const m = /=> build ([0-9a-f-]{36})/.exec(out);
  if (m === null) {
    throw new Error(`no build id in:\n${out}`);
  }
  return m[1];
};

/** Paths under `dir` holding `needle` (grep -r: 1 means none). */
function grepTree(dir: string, needle: string): string[] {
  const r = spawnSync('grep', ['-rlaF', '--', needle, dir], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 1) {
    throw new Error(`grep failed: ${r.stderr}`);
  }
  return r.stdout.split('\n').filter(Boolean);
}

let secretFile: string;

beforeAll(async () => {
  requireTools('skopeo', 'umoci', 'grep', 'redis-server');
  stack = await startStack({
    name: 'secrets',
    env: { AUTH_SECRET: 'e2e-secrets-auth-secret-0123456789', WORKER_CONCURRENCY: '1' },
    redisAppendonly: true,
  });
  secretFile = join(tempDir('stratum-secret-'), 'npmrc');
  writeFileSync(secretFile, `${FILE_SECRET}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await stack?.stop();
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
  }
});

let builtId: string;

it('stratum build --secret id=npmrc,src=FILE --secret id=tok,env=TOKEN: the steps get them, the log shows ****', async () => {
  const dir = writeTree(busyboxContext(DOCKERFILE));
  dirs.push(dir);
  const r = await stratum(
    [
      'build',
      '-t',
      'e2e/secrets:1',
      '--secret',
      `id=npmrc,src=${secretFile}`,
      '--secret',
      'id=tok,env=TOKEN',
      dir,
    ],
    { TOKEN: ENV_SECRET },
  );
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('token=****');
  expect(r.stdout).toMatch(/\*\*\*\*/);
  expect(r.stdout).not.toContain(FILE_SECRET);
  expect(r.stdout).not.toContain(ENV_SECRET);
  builtId = buildIdOf(r.stdout);
});

it('the secrets are nowhere: layers and config (umoci), Redis and its AOF, the record, the log', async () => {
  const oci = tempDir('stratum-secrets-oci-');
  const host = new URL(stack.api.url).host;
  // Async: the API answering skopeo runs in this process.
  await execFileP('skopeo', [
    'copy',
    '--src-tls-verify=false',
    `docker://${host}/e2e/secrets:1`,
    `oci:${join(oci, 'layout')}:img`,
  ]);
  const bundle = join(oci, 'bundle');
  await execFileP('umoci', ['unpack', '--image', `${join(oci, 'layout')}:img`, bundle]);
  // The image did get what the steps derived from the secrets (proof they were there)...
  expect(
    execFileSync('cat', [join(bundle, 'rootfs/toklen'), join(bundle, 'rootfs/mode')], { encoding: 'utf8' }),
  ).toBe(`${ENV_SECRET.length}\n440\n`);
  // ... and none of their bytes: unpacked files, config/manifest blobs, the umoci metadata.
  for (const needle of [FILE_SECRET, ENV_SECRET]) {
    expect(grepTree(oci, needle)).toEqual([]);
  }
  // Redis: the bundle is deleted once the build ended, and the AOF never held a value in clear.
  const redisFiles = stack.redis.dir;
  await request(stack.api.url).get('/healthz');
  for (const needle of [FILE_SECRET, ENV_SECRET, Buffer.from(FILE_SECRET).toString('base64').slice(0, 16)]) {
    expect(grepTree(redisFiles, needle)).toEqual([]);
  }
  expect(grepTree(redisFiles, 'stratum:build-secrets:').length).toBeGreaterThan(0); // it was there, sealed
  expect(await buildSecretBundleKeys(stack.redis.url)).toEqual([]);
  const record = await request(stack.api.url).get(`/api/v1/builds/${builtId}`).expect(200);
  const logs = await request(stack.api.url)
    .get(`/api/v1/builds/${builtId}/logs`)
    .buffer(true)
    .parse((res, cb) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => cb(null, text));
    });
  const logText = logs.body as string;
  expect(logText).toContain('****');
  for (const needle of [FILE_SECRET, ENV_SECRET]) {
    expect(JSON.stringify(record.body)).not.toContain(needle);
    expect(logText).not.toContain(needle);
  }
});

it('a changed secret value keeps the step cache: the rebuild is fully cached', async () => {
  const dir = writeTree(busyboxContext(DOCKERFILE));
  dirs.push(dir);
  const r = await stratum(
    [
      'build',
      '-t',
      'e2e/secrets:2',
      '--secret',
      `id=npmrc,src=${secretFile}`,
      '--secret',
      'id=tok,env=TOKEN',
      dir,
    ],
    { TOKEN: 'an-entirely-different-token' },
  );
  expect(r.code).toBe(0);
  const rec = (await request(stack.api.url).get(`/api/v1/builds/${buildIdOf(r.stdout)}`)).body as BuildRecord;
  expect(rec.steps.filter((s) => s.name.includes('RUN')).map((s) => s.status)).toEqual([
    'cached',
    'cached',
    'cached',
  ]);
});

it('a secret the Dockerfile requires but the build lacks fails naming the id and the line', async () => {
  const dir = writeTree(
    busyboxContext('RUN echo ok\nRUN --mount=type=secret,id=deploykey,required=true true'),
  );
  dirs.push(dir);
  const r = await stratum(['build', '-t', 'e2e/secrets:3', dir]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/Dockerfile:5: .*secret "deploykey" is required/);
});

it('a secret over 500 KiB is refused by the API (413) and by the CLI', async () => {
  const big = Buffer.alloc(500 * 1024 + 1, 'a').toString('base64');
  const res = await request(stack.api.url)
    .post('/api/v1/builds/secrets')
    .set('content-type', 'application/vnd.stratum.secrets+json')
    .send(JSON.stringify({ secrets: { big } }))
    .expect(413);
  expect(res.body).toMatchObject({ code: 'SECRET_TOO_LARGE' });
  const file = join(tempDir('stratum-big-secret-'), 'big');
  writeFileSync(file, Buffer.alloc(500 * 1024 + 1, 'a'));
  const dir = writeTree(busyboxContext('RUN true'));
  dirs.push(dir);
  const r = await stratum(['build', '--secret', `id=big,src=${file}`, dir]);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/larger than 512000 bytes/);
});

it('a build naming an unknown secrets bundle is refused', async () => {
  const res = await request(stack.api.url)
    .post('/api/v1/builds?secrets=6f1c1d8e-0000-4000-8000-000000000000')
    .set('content-type', 'application/x-tar')
    .send(Buffer.alloc(1024))
    .expect(400);
  expect(res.body.message).toMatch(/unknown or expired/);
});

it('without AUTH_SECRET, secrets are refused with 400 naming AUTH_SECRET', async () => {
  const plain = await startStack({ name: 'secrets-noauth', worker: false });
  try {
    const res = await request(plain.api.url)
      .post('/api/v1/builds/secrets')
      .send({ secrets: { tok: Buffer.from('x').toString('base64') } })
      .expect(400);
    expect(res.body.message).toMatch(/AUTH_SECRET/);
  } finally {
    await plain.stop();
  }
});
