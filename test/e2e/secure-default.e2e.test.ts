import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, RedisServerHandle, startRedisServer } from '@stratum/testing';

// Secure by default, through the built API (dist/apps/api/src/main.js) as up.sh runs it: with no
// auth configured it listens on loopback only (the host's other addresses refuse the connection),
// refuses to start on 0.0.0.0 naming what is missing, and listens everywhere once both
// REGISTRY_AUTH=token and API_AUTH=true are set, where builds and pushes need credentials.

const REPO = resolve(__dirname, '../..');
const API_MAIN = resolve(REPO, 'dist/apps/api/src/main.js');
const SECRET = 'an-auth-secret-of-at-least-32-characters!';
const TOKEN = 'secure-default-token-0123456789';

interface ApiProcess {
  readonly child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function startApi(env: Record<string, string>): ApiProcess {
  if (!existsSync(API_MAIN)) {
    throw new Error(`${API_MAIN} is missing: run npm run build`);
  }
  const child = spawn(process.execPath, [API_MAIN], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_LEVEL: 'warn', PRETTY_LOGS: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

async function waitListening(api: ApiProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!/listening on http:\/\//.test(api.output())) {
    if (api.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the API did not start:\n${api.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopApi(api: ApiProcess | undefined): Promise<void> {
  if (api === undefined || api.child.exitCode !== null || api.child.signalCode !== null) {
    return;
  }
  api.child.kill('SIGTERM');
  const timer = setTimeout(() => api.child.kill('SIGKILL'), 10_000);
  await api.exited;
  clearTimeout(timer);
}

/** 'open' when a TCP connection to host:port is accepted, else the error code (ECONNREFUSED…). */
function probe(host: string, port: number): Promise<string> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    socket.setTimeout(3000, () => {
      socket.destroy();
      done('timeout');
    });
    socket.once('connect', () => {
      socket.destroy();
      done('open');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/** An IPv4 address of this host that is not loopback: what another machine would connect to. */
function externalAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv4' && !a.internal) {
        return a.address;
      }
    }
  }
  throw new Error('this host has no non-loopback IPv4 address to test the API is not reachable on');
}

describe('secure by default (e2e, the built API)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let api: ApiProcess | undefined;

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-secure-default-'));
  });

  afterEach(async () => {
    await stopApi(api);
    api = undefined;
  });

  afterAll(async () => {
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('with no auth configured it listens on loopback only and says why', async () => {
    const port = await freePort();
    api = startApi({ REDIS_URL: redis.url, DATA_DIR: dataDir, API_PORT: String(port) });
    await waitListening(api);
    expect(api.output()).toContain(`listening on http://127.0.0.1:${port}`);
    expect(api.output()).toMatch(/loopback only, as no authentication is configured/);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(await probe(externalAddress(), port)).toBe('ECONNREFUSED');
  }, 60_000);

  it('refuses to start on 0.0.0.0 without both kinds of auth, naming what is missing', async () => {
    const port = await freePort();
    api = startApi({ REDIS_URL: redis.url, DATA_DIR: dataDir, API_PORT: String(port), API_HOST: '0.0.0.0' });
    expect(await api.exited).not.toBe(0);
    expect(api.output()).toMatch(
      /API_HOST: 0\.0\.0\.0 would accept unauthenticated builds, pushes and deletes from the network; set REGISTRY_AUTH=token and API_AUTH=true/,
    );
    expect(await probe('127.0.0.1', port)).toBe('ECONNREFUSED');
  }, 60_000);

  it('with registry and API auth on it listens on every interface, and writes need credentials', async () => {
    const port = await freePort();
    api = startApi({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      API_PORT: String(port),
      REGISTRY_AUTH: 'token',
      API_AUTH: 'true',
      AUTH_SECRET: SECRET,
      API_TOKENS: `ci:${TOKEN}`,
    });
    await waitListening(api);
    expect(api.output()).toContain(`listening on http://0.0.0.0:${port}`);
    const base = `http://${externalAddress()}:${port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/api/v1/builds`, { method: 'POST' })).status).toBe(401);
    expect((await fetch(`${base}/v2/any/repo/blobs/uploads/`, { method: 'POST' })).status).toBe(401);
    const listed = await fetch(`${base}/api/v1/builds`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(listed.status).toBe(200);
  }, 60_000);
});
