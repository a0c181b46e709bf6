// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, ProjectTrigger, ProjectView } from '@stratum/contracts';
import { createRedis } from '@stratum/jobs';
import {
  busyboxContext,
  pollBuild,
  RedisServerHandle,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
  writeTree,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { FakeForge, Recorded } from '../support/fake-forge';

jest.setTimeout(120_000);

const SECRET = 'x'.repeat(40);
let redisServer: RedisServerHandle;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle;
let repoDir: string;
let repoUrl: string;
let mainSha: string;
let brokenSha: string;
const forge = new FakeForge();
/** Everything this process (the API) printed: no token may be in it. */
const printed: string[] = [];

function git(args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd: repoDir,
    encoding: 'utf8',
  }).trim();
}

async function project(name: string, kind: string, apiPath: string, token: string): Promise<void> {
  const res = await request(api.url)
    .post('/api/v1/projects')
    .send({
      name,
      repoUrl,
      branches: ['main', 'broken'],
      forge: kind,
      forgeApiUrl: `http://127.0.0.1:${forge.port}${apiPath}`,
      forgeRepository: 'acme/hello',
      statusToken: token,
    });
  expect(`${res.status} ${JSON.stringify(res.body)}`).toMatch(/^201 /);
}

async function build(name: string, branch: string): Promise<BuildRecord> {
  const res = await request(api.url).post(`/api/v1/projects/${name}/builds`).send({ branch });
  const t = res.body as ProjectTrigger;
  expect(`${res.status} ${t.error}`).toBe('202 null');
  return pollBuild(api.url, t.buildId as string, ['succeeded', 'failed', 'cancelled'], 90_000, 200);
}

/** Polls until `check` holds (fails naming `what` after `ms`). */
async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not within ${ms} ms; forge saw ${JSON.stringify(forge.requests.map((r) => [r.path, r.status, r.body.state]))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    jest.spyOn(stream, 'write').mockImplementation((chunk: unknown, ...rest: unknown[]) => {
      printed.push(String(chunk));
      return write(chunk, ...rest);
    });
  }
  await forge.start();
  redisServer = await startRedisServer();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-e2e-status-'));
  repoDir = writeTree(busyboxContext('RUN true\n'));
  git(['init', '-q', '-b', 'main']);
  git(['add', '-A']);
  git(['commit', '-q', '-m', 'works']);
  mainSha = git(['rev-parse', 'HEAD']);
  git(['checkout', '-q', '-b', 'broken']);
  writeTree({ Dockerfile: 'FROM busybox\nRUN exit 3\n' }, repoDir);
  git(['commit', '-q', '-am', 'breaks']);
  brokenSha = git(['rev-parse', 'HEAD']);
  const bare = join(dataDir, 'hello.git');
  execFileSync('git', ['clone', '-q', '--bare', repoDir, bare]);
  repoUrl = `file://${bare}`;
  const env = {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'e2e-status',
    GIT_ALLOW_FILE_URLS: 'true',
    MAINTENANCE_SCHEDULE: 'off',
    AUTH_SECRET: SECRET,
    OUTGOING_BACKOFF_MS: '300',
    OUTGOING_TIMEOUT_MS: '2000',
  };
  api = await startApiServer(testConfig({ ...env, PUBLIC_URL: 'https://stratum.example.com' }));
  worker = await startWorkerProcess({ ...env, JOB_ATTEMPTS: '1', WORKER_SHUTDOWN_TIMEOUT_MS: '3000' });
  await project('gh', 'github', '/api/v3', 'tok-github-123');
  await project('gl', 'gitlab', '/api/v4', 'tok-gitlab-456');
  await project('gt', 'gitea', '/api/v1', 'tok-gitea-789');
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await redisServer?.stop();
  await forge.stop().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(repoDir, { recursive: true, force: true });
});

describe('commit statuses', () => {
  it('GitHub: pending when queued, then success, with context, target_url and the Bearer token', async () => {
    const b = await build('gh', 'main');
    expect(b.state).toBe('succeeded');
    const path = `/api/v3/repos/acme/hello/statuses/${mainSha}`;
    await until('success delivered', () => forge.delivered(path).includes('success'));
    const states = forge.delivered(path);
    expect(states[0]).toBe('pending');
    expect(states.at(-1)).toBe('success');
    expect(states).not.toContain('running');
    const last = forge.requests.filter((r) => r.path === path).at(-1) as Recorded;
    expect(last.method).toBe('POST');
    expect(last.headers.authorization).toBe('Bearer tok-github-123');
    expect(last.headers.accept).toBe('application/vnd.github+json');
    expect(last.body).toEqual({
      state: 'success',
      context: 'stratum/gh',
      target_url: `https://stratum.example.com/#/builds/${b.id}`,
      description: 'build succeeded',
    });
  });

  it('a failing Dockerfile ends as failure', async () => {
    const b = await build('gh', 'broken');
    expect(b.state).toBe('failed');
    const path = `/api/v3/repos/acme/hello/statuses/${brokenSha}`;
    await until('failure delivered', () => forge.delivered(path).includes('failure'));
    expect(forge.delivered(path).at(-1)).toBe('failure');
  });

  it('GitLab: POST /projects/:id/statuses/:sha with PRIVATE-TOKEN, name and ref; running while it runs', async () => {
    const b = await build('gl', 'main');
    const path = `/api/v4/projects/acme%2Fhello/statuses/${mainSha}`;
    await until('success delivered', () => forge.delivered(path).includes('success'));
    // GitLab has a `running` state (GitHub and Gitea do not: theirs stay pending): sent once,
    // before success; pending only if the build was still queued when its job ran.
    const states = forge.delivered(path);
    expect(states.filter((s) => s === 'running')).toEqual(['running']);
    expect(states.indexOf('running')).toBeLessThan(states.indexOf('success'));
    expect(states.at(-1)).toBe('success');
    expect(new Set(states).size).toBe(states.length);
    const last = forge.requests.filter((r) => r.path === path).at(-1) as Recorded;
    expect(last.headers['private-token']).toBe('tok-gitlab-456');
    expect(last.body).toEqual({
      state: 'success',
      ref: 'main',
      name: 'stratum/gl',
      target_url: `https://stratum.example.com/#/builds/${b.id}`,
      description: 'build succeeded',
    });
  });

  it('Gitea: POST /repos/{owner}/{repo}/statuses/{sha} with Authorization: token', async () => {
    await build('gt', 'main');
    const path = `/api/v1/repos/acme/hello/statuses/${mainSha}`;
    await until('success delivered', () => forge.delivered(path).includes('success'));
    const last = forge.requests.filter((r) => r.path === path).at(-1) as Recorded;
    expect(last.headers.authorization).toBe('token tok-gitea-789');
    expect(last.body).toMatchObject({ state: 'success', context: 'stratum/gt' });
  });

  it('a forge answering 500 is retried with backoff until it takes the status', async () => {
    const before = forge.requests.length;
    forge.failNext = 3;
    await build('gt', 'broken');
    const path = `/api/v1/repos/acme/hello/statuses/${brokenSha}`;
    await until('failure delivered after the 500s', () => forge.delivered(path).includes('failure'));
    const seen = forge.requests.slice(before).map((r) => r.status);
    expect(seen.slice(0, 3)).toEqual([500, 500, 500]);
    expect(seen).toContain(201);
  });

  it('a forge that is down while the build runs gets every status once it is back', async () => {
    const port = forge.port;
    await forge.stop();
    const b = await build('gl', 'broken');
    expect(b.state).toBe('failed');
    await new Promise((r) => setTimeout(r, 2000)); // a few attempts meet a closed port
    await forge.start(port);
    const path = `/api/v4/projects/acme%2Fhello/statuses/${brokenSha}`;
    await until('failed delivered after the outage', () => forge.delivered(path).includes('failed'));
    expect(forge.delivered(path).at(-1)).toBe('failed');
  });

  it('keeps the token sealed: not in the project view, the stored project or any queued job', async () => {
    const view = (await request(api.url).get('/api/v1/projects/gh').expect(200)).body as ProjectView;
    expect(view).toMatchObject({ forge: 'github', hasStatusToken: true, forgeRepository: 'acme/hello' });
    expect(JSON.stringify(view)).not.toContain('tok-github');
    const redis = createRedis(redisServer.url, 'e2e-status-check');
    try {
      expect(await redis.get('stratum:project:gh')).not.toContain('tok-github');
      const keys = await redis.keys('bull:outgoing:*');
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        const type = await redis.type(key);
        const dump =
          type === 'hash'
            ? JSON.stringify(await redis.hgetall(key))
            : type === 'string'
              ? await redis.get(key)
              : '';
        expect(`${key} ${dump ?? ''}`).not.toMatch(/tok-git/);
      }
    } finally {
      redis.disconnect();
    }
    // The API logged deliveries and failures (attempts met a 500 and a closed port), never a token.
    expect(printed.join('')).toMatch(/commit status to gitea acme\/hello@\w+: the forge answered 500/);
    expect(printed.join('')).not.toMatch(/tok-git/);
    // A token needs a forge that can be reached.
    const bad = await request(api.url)
      .post('/api/v1/projects')
      .send({ name: 'noforge', repoUrl, statusToken: 'tok' });
    expect(`${bad.status} ${(bad.body as { message: string }).message}`).toMatch(/^400 .*forge: required/);
    const noRepo = await request(api.url)
      .post('/api/v1/projects')
      .send({ name: 'norepo', repoUrl, forge: 'github', statusToken: 'tok' });
    expect(`${noRepo.status} ${(noRepo.body as { message: string }).message}`).toMatch(
      /^400 .*forgeRepository/,
    );
  });
});
