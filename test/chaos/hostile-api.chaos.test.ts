// Hostile input at the API's doors that need no build: webhook bodies (oversized, unsigned,
// deeply nested) and password logins (a burst of wrong ones, probing which names exist). The API
// runs as its own process from dist/ (npm run build first), so its memory and event loop are
// measured alone. Each case prints what it measured.
import { ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { GitForge } from '@stratum/contracts';
import { signWebhook } from '@stratum/git';
import { createRedis } from '@stratum/jobs';
import { freePort, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { sleep } from './chaos-support';

jest.setTimeout(180_000);

const API_MAIN = resolve(__dirname, '../../dist/apps/api/src/main.js');
const SECRET = 'a-hostile-webhook-secret-of-some-length';
const AUTH_SECRET = 'a-chaos-auth-secret-of-at-least-32-chars';
const PASSWORD = 'the-right-password';
const MAX_BODY = 25 * 1024 * 1024; // the default, as in the report (20 x 24 MB took 458 MB)

let redisServer: RedisServerHandle;
let redis: Redis;
let dataDir: string;
let api: ChildProcess;
let apiUrl: string;
let apiOutput = '';

/** A line of the report this suite prints at the end. */
const report: string[] = [];

/** The API's resident memory and its peak so far (kB), from /proc. */
function memoryKb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/**
 * POSTs `total` bytes in 64 KiB chunks, chunked (no Content-Length) unless `declare`, stopping
 * as soon as an answer arrives. Resolves with the status, or `reset` when the connection was
 * cut before any answer.
 */
function postStream(
  path: string,
  headers: Record<string, string>,
  total: number,
  declare = false,
): Promise<{ status: number | 'reset'; sent: number }> {
  return new Promise((done) => {
    const url = new URL(path, apiUrl);
    let sent = 0;
    let answered = false;
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...headers,
          ...(declare ? { 'content-length': total } : {}),
        },
      },
      (res) => {
        answered = true;
        res.resume();
        res.on('end', () => done({ status: res.statusCode ?? 0, sent }));
        res.on('error', () => done({ status: res.statusCode ?? 0, sent }));
      },
    );
    req.on('error', () => {
      if (!answered) {
        done({ status: 'reset', sent });
      }
    });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = (): void => {
      while (!answered && !req.destroyed && sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      if (!answered && !req.destroyed) {
        req.end();
      }
    };
    pump();
  });
}

function hookHeaders(body: Buffer, secret = SECRET, delivery: string = randomUUID()): Record<string, string> {
  return {
    'X-GitHub-Event': 'push',
    'X-GitHub-Delivery': delivery,
    'X-Hub-Signature-256': signWebhook(GitForge.GitHub, secret, body),
  };
}

function postHook(body: Buffer, headers: Record<string, string>): request.Test {
  let req = request(apiUrl).post('/hooks/github').set('Content-Type', 'application/json');
  for (const [k, v] of Object.entries(headers)) {
    req = req.set(k, v);
  }
  return req.send(body.toString('utf8'));
}

/** Times GET /healthz every `everyMs` until `stop` resolves; the slowest answer (ms). */
async function probeHealth(
  stop: Promise<unknown>,
  everyMs = 25,
): Promise<{ worst: number; p90: number; count: number }> {
  let finished = false;
  void stop.finally(() => (finished = true));
  const times: number[] = [];
  while (!finished) {
    const t0 = performance.now();
    await request(apiUrl).get('/healthz').expect(200);
    times.push(performance.now() - t0);
    await sleep(everyMs);
  }
  times.sort((a, b) => a - b);
  return {
    worst: times[times.length - 1] ?? 0,
    p90: times[Math.floor(times.length * 0.9)] ?? 0,
    count: times.length,
  };
}

/**
 * The longest the API's event loop was blocked since the last call (ms): prom-client's
 * `nodejs_eventloop_lag_max_seconds`, whose histogram is reset on every scrape. Measured inside
 * the API, so neither this process's own work nor the network is in it.
 */
async function apiLoopLagMaxMs(): Promise<number> {
  const text = (await request(apiUrl).get('/metrics').expect(200)).text;
  const m = /^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text);
  if (m === null) {
    throw new Error('no nodejs_eventloop_lag_max_seconds in /metrics');
  }
  return Number(m[1]) * 1000;
}

async function clearLoginCounts(): Promise<void> {
  const keys = await redis.keys('stratum:login:*');
  if (keys.length > 0) {
    await redis.del(...keys);
  }
}

beforeAll(async () => {
  if (!existsSync(API_MAIN)) {
    throw new Error(`${API_MAIN} is missing: run npm run build`);
  }
  redisServer = await startRedisServer();
  redis = createRedis(redisServer.url, 'chaos-hostile-api');
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-hostile-api-'));
  const port = await freePort();
  apiUrl = `http://127.0.0.1:${port}`;
  api = spawn(process.execPath, [API_MAIN], {
    cwd: resolve(__dirname, '../..'),
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      REDIS_URL: redisServer.url,
      DATA_DIR: dataDir,
      API_HOST: '127.0.0.1',
      API_PORT: String(port),
      LOG_LEVEL: 'warn',
      PRETTY_LOGS: 'false',
      MAINTENANCE_SCHEDULE: 'off',
      REGISTRY_AUTH: 'token',
      AUTH_SECRET,
      // As behind a load balancer on this host: the client address comes from X-Forwarded-For.
      TRUST_PROXY: 'loopback',
      // bcrypt at cost 10, as htpasswd -B writes it: ~100-150 ms of CPU per check here.
      REGISTRY_USERS: `alice:${bcrypt.hashSync(PASSWORD, 10)}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  api.stdout?.on('data', (d: Buffer) => (apiOutput += d.toString()));
  api.stderr?.on('data', (d: Buffer) => (apiOutput += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!/listening on/.test(apiOutput)) {
    if (api.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the API did not start:\n${apiOutput}`);
    }
    await sleep(100);
  }
  const created = await request(apiUrl)
    .post('/api/v1/projects')
    .send({
      name: 'hostile',
      repoUrl: 'https://git.example/o/hostile.git',
      branches: ['main'],
      secret: SECRET,
    });
  expect(created.status).toBe(201);
});

afterAll(async () => {
  if (api !== undefined && api.exitCode === null) {
    const exited = new Promise((r) => api.once('exit', r));
    api.kill('SIGTERM');
    const force = setTimeout(() => api.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(force);
  }
  await redis?.quit();
  await redisServer?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  process.stdout.write(`\nhostile API:\n${report.map((l) => `  ${l}`).join('\n')}\n`);
});

describe('webhooks', () => {
  it('20 oversized bodies at once are refused (413, or 503 past the in-flight budget) and the API’s memory stays bounded', async () => {
    const pid = api.pid as number;
    const before = memoryKb(pid);
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        postStream('/hooks/github', hookHeaders(Buffer.from('x')), MAX_BODY + 5 * 1024 * 1024),
      ),
    );
    const ms = performance.now() - t0;
    const after = memoryKb(pid);
    const statuses = results.map((r) => r.status);
    const growthMb = (after.peak - before.rss) / 1024;
    report.push(
      `20 x ${(MAX_BODY / 1048576 + 5).toFixed(0)} MB webhook bodies in parallel: ${JSON.stringify(
        countOf(statuses),
      )} in ${ms.toFixed(0)} ms; API peak RSS ${(after.peak / 1024).toFixed(0)} MB (+${growthMb.toFixed(0)} MB over ${(before.rss / 1024).toFixed(0)} MB)`,
    );
    // 'reset': the API answered and closed while this client was still writing, and the kernel's
    // RST dropped the answer before it was read (a refusal all the same; nothing was accepted).
    expect(statuses.filter((s) => s !== 413 && s !== 503 && s !== 'reset')).toEqual([]);
    expect(statuses.filter((s) => s === 'reset').length).toBeLessThanOrEqual(5);
    // Bodies held: at most WEBHOOK_MAX_INFLIGHT_BYTES (64 MiB); the rest is socket buffers and
    // garbage not yet collected (+84-133 MB measured). The report's 20 x 24 MB took +458 MB.
    expect(growthMb).toBeLessThan(250);
    await request(apiUrl).get('/healthz').expect(200);
  });

  it('a body too large is refused at the limit, or before it is sent when declared; a wrong GitLab token before the body is read', async () => {
    const streamed = await postStream(
      '/hooks/github',
      hookHeaders(Buffer.from('x')),
      MAX_BODY + 20 * 1024 * 1024,
    );
    expect(streamed.status).toBe(413);
    expect(streamed.sent).toBeLessThan(MAX_BODY + 20 * 1024 * 1024);
    const t0 = performance.now();
    const declared = await postStream(
      '/hooks/github',
      hookHeaders(Buffer.from('x')),
      200 * 1024 * 1024,
      true,
    );
    const declaredMs = performance.now() - t0;
    // 413 and Connection: close at once; a client still writing its body may see the close
    // (a reset) before it reads the answer — as with nginx. Either way it was refused early:
    expect([413, 'reset']).toContain(declared.status);
    // It was answered long before 200 MB could have gone through.
    expect(declared.sent).toBeLessThan(64 * 1024 * 1024);
    const t1 = performance.now();
    const gitlab = await postStream(
      '/hooks/gitlab',
      {
        'X-Gitlab-Event': 'Push Hook',
        'X-Gitlab-Token': 'not-the-token',
        'X-Gitlab-Event-UUID': randomUUID(),
      },
      20 * 1024 * 1024,
    );
    const gitlabMs = performance.now() - t1;
    expect(gitlab.status).toBe(401);
    report.push(
      `streamed ${(MAX_BODY / 1048576 + 20).toFixed(0)} MB: ${streamed.status} after ${(streamed.sent / 1048576).toFixed(1)} MB sent; ` +
        `declared 200 MB: ${declared.status} after ${(declared.sent / 1048576).toFixed(1)} MB sent (${declaredMs.toFixed(0)} ms); ` +
        `wrong GitLab token with 20 MB: ${gitlab.status} after ${(gitlab.sent / 1048576).toFixed(1)} MB sent (${gitlabMs.toFixed(0)} ms)`,
    );
  });

  it('an unsigned body is refused before it is parsed; a signed deep nesting is refused before JSON.parse', async () => {
    const junk = Buffer.from('{"ref": [[[ not json at all');
    const bad = await postHook(junk, hookHeaders(junk, 'not-the-secret'));
    expect(`${bad.status} ${(bad.body as { code: string }).code}`).toBe('401 UNAUTHORIZED');

    // 10 MB of nesting (the report: 4.9 s of CPU), signed with the project's secret.
    const depth = 5 * 1024 * 1024;
    const deep = Buffer.from(`{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`);
    await apiLoopLagMaxMs();
    const t0 = performance.now();
    const done = postHook(deep, hookHeaders(deep)).then((r) => r);
    const health = probeHealth(done);
    const res = await done;
    const ms = performance.now() - t0;
    const { worst } = await health;
    const lag = await apiLoopLagMaxMs();
    expect(`${res.status} ${(res.body as { code: string }).code}`).toBe('400 WEBHOOK_INVALID');
    report.push(
      `signed 10 MB nested JSON: ${res.status} in ${ms.toFixed(0)} ms, API event loop blocked at most ${lag.toFixed(0)} ms, slowest /healthz meanwhile ${worst.toFixed(0)} ms; invalid JSON with a bad signature: ${bad.status}`,
    );
    // JSON.parse and the schema checks of it took 4.9 s of CPU. Generous: two shared cores.
    expect(lag).toBeLessThan(500);
    expect(ms).toBeLessThan(5000);
  });

  it('a captured delivery replayed with its id upper-cased, or under a new id, is refused', async () => {
    // A push of a branch the project does not build: genuine, but builds nothing.
    const push = Buffer.from(
      JSON.stringify({
        ref: 'refs/heads/feature',
        after: 'a'.repeat(40),
        repository: { clone_url: 'https://git.example/o/hostile.git' },
      }),
    );
    const id = randomUUID();
    const first = await postHook(push, hookHeaders(push, SECRET, id));
    expect(`${first.status} ${(first.body as { status: string }).status}`).toBe('202 ignored');
    const upper = await postHook(push, hookHeaders(push, SECRET, id.toUpperCase()));
    const renamed = await postHook(push, hookHeaders(push, SECRET, randomUUID()));
    expect([upper.status, renamed.status]).toEqual([401, 401]);
    report.push(`replay: upper-cased id ${upper.status}, new id ${renamed.status}`);
  });
});

describe('logins', () => {
  beforeEach(clearLoginCounts);

  it('20 wrong logins at once leave /healthz fast and are answered 429 past the limit', async () => {
    await apiLoopLagMaxMs();
    const burst = Promise.all(
      Array.from({ length: 20 }, () =>
        request(apiUrl).get('/v2/token?service=stratum').auth('alice', 'wrong-password'),
      ),
    );
    const health = probeHealth(burst, 10);
    const answers = await burst;
    const { worst, p90, count } = await health;
    const lag = await apiLoopLagMaxMs();
    const statuses = answers.map((a) => a.status);
    const throttled = answers.filter((a) => a.status === 429);
    report.push(
      `20 wrong logins at once: ${JSON.stringify(countOf(statuses))}; API event loop blocked at most ${lag.toFixed(0)} ms; /healthz meanwhile (${count}): p90 ${p90.toFixed(0)} ms, slowest ${worst.toFixed(0)} ms`,
    );
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
    // LOGIN_FREE_ATTEMPTS (5) and the one that locks the next out are checked; the rest are not.
    expect(statuses.filter((s) => s === 401)).toHaveLength(6);
    expect(Number(throttled[0]?.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(throttled[0]?.body).toMatchObject({ errors: [{ code: 'TOOMANYREQUESTS' }] });
    // Was 2.4 s at p90 and 6 s at worst with bcrypt on the event loop. Generous: the machine's
    // two cores are shared, and this process's own event loop is in every measurement.
    expect(lag).toBeLessThan(300);
    expect(p90).toBeLessThan(300);
    expect(worst).toBeLessThan(1500);

    // Once a lock-out has passed, the next wrong attempt is checked and locks out the one after
    // it for longer (2 s): the right password too, until the Retry-After has passed.
    const login = (password: string) =>
      request(apiUrl).get('/v2/token?service=stratum').auth('alice', password);
    for (;;) {
      const wrong = await login('wrong-password');
      if (wrong.status !== 429) {
        expect(wrong.status).toBe(401);
        break;
      }
      await sleep(Number(wrong.headers['retry-after']) * 1000);
    }
    const locked = await login(PASSWORD);
    expect(locked.status).toBe(429);
    await sleep(Number(locked.headers['retry-after']) * 1000 + 100);
    await login(PASSWORD).expect(200);
  });

  it('behind a trusted proxy, the limit counts each forwarded client address, not the proxy’s', async () => {
    const from = (addr: string, user: string) =>
      request(apiUrl)
        .get('/v2/token?service=stratum')
        .set('X-Forwarded-For', addr)
        .auth(user, 'wrong-password');
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      statuses.push((await from('198.51.100.1', `user-${i}`)).status);
    }
    // Five free, the sixth checked and locking the address out, the seventh refused unchecked.
    expect(statuses).toEqual([401, 401, 401, 401, 401, 401, 429]);
    expect((await from('198.51.100.2', 'user-x')).status).toBe(401);
  });

  it('an unknown user name takes as long as a known one', async () => {
    const time = async (user: string): Promise<number> => {
      await clearLoginCounts();
      const t0 = performance.now();
      await request(apiUrl).get('/v2/token?service=stratum').auth(user, 'wrong-password').expect(401);
      return performance.now() - t0;
    };
    await time('nobody'); // warm-up: the first unknown name makes the dummy hash
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 7; i++) {
      known.push(await time('alice'));
      unknown.push(await time(`nobody-${i}`));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    report.push(
      `login timing (median of 7): known user ${median(known).toFixed(1)} ms, unknown ${median(unknown).toFixed(1)} ms`,
    );
    // Was 83 ms vs 2.8 ms.
    expect(median(unknown) / median(known)).toBeGreaterThan(0.6);
    expect(median(unknown) / median(known)).toBeLessThan(1.6);
  });
});

function countOf(values: (number | string)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) {
    out[String(v)] = (out[String(v)] ?? 0) + 1;
  }
  return out;
}
