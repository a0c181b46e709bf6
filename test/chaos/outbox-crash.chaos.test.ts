import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, ProjectTrigger } from '@stratum/contracts';
import {
  busyboxContext,
  freePort,
  RedisServerHandle,
  ServiceProcessHandle,
  startApiProcess,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
  writeTree,
} from '@stratum/testing';
import { FakeForge } from '../support/fake-forge';
import { pollFor, sleep } from './chaos-support';

jest.setTimeout(180_000);

/**
 * The crash window between writing a build record and queueing what goes out about it (commit
 * status, notifications): the worker dies right after writing `succeeded`, and the API dies
 * when its outbox relay has read that change but queued nothing. Once an API is back, the
 * forge gets every status and the receiver every event, each once, in order.
 */
describe('outbox: a crash between the record write and the enqueue loses nothing', () => {
  const forge = new FakeForge();
  let redis: RedisServerHandle;
  let dataDir: string;
  let repoDir: string;
  let api: ServiceProcessHandle | null = null;
  let worker: WorkerProcessHandle | null = null;

  beforeAll(async () => {
    await forge.start();
    redis = await startRedisServer();
    dataDir = mkdtempSync(join(tmpdir(), 'stratum-outbox-crash-'));
    repoDir = writeTree(busyboxContext('RUN true\n'));
  });

  afterAll(async () => {
    await worker?.stop(5000);
    await api?.stop(5000);
    await redis?.stop();
    await forge.stop().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(repoDir, { recursive: true, force: true });
  });

  it('SIGKILL of the worker after writing succeeded and of the API relay before queueing', async () => {
    const git = (args: string[]): string =>
      execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
        cwd: repoDir,
        encoding: 'utf8',
      }).trim();
    git(['init', '-q', '-b', 'main']);
    git(['add', '-A']);
    git(['commit', '-q', '-m', 'works']);
    const sha = git(['rev-parse', 'HEAD']);
    const bare = join(dataDir, 'hello.git');
    execFileSync('git', ['clone', '-q', '--bare', repoDir, bare]);

    const port = await freePort();
    const apiUrl = `http://127.0.0.1:${port}`;
    const env = {
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      GIT_ALLOW_FILE_URLS: 'true',
      MAINTENANCE_SCHEDULE: 'off',
      AUTH_SECRET: 'x'.repeat(40),
      OUTGOING_BACKOFF_MS: '300',
      NOTIFY_URLS: `http://127.0.0.1:${forge.port}/receiver`,
      NOTIFY_SECRET: 'n'.repeat(32),
      API_PORT: String(port),
      WORKER_ID: 'outbox-api',
    };
    api = await startApiProcess({ ...env, TEST_CRASH_POINT: 'outbox-relay-claimed:succeeded' });
    const created = await request(apiUrl)
      .post('/api/v1/projects')
      .send({
        name: 'gl',
        repoUrl: `file://${bare}`,
        branches: ['main'],
        forge: 'gitlab',
        forgeApiUrl: `http://127.0.0.1:${forge.port}/api/v4`,
        forgeRepository: 'acme/hello',
        statusToken: 'tok-gitlab',
      });
    expect(`${created.status} ${JSON.stringify(created.body)}`).toMatch(/^201 /);
    worker = await startWorkerProcess({
      ...env,
      WORKER_ID: 'outbox-worker',
      JOB_ATTEMPTS: '1',
      TEST_CRASH_POINT: 'build-record-written:succeeded',
    });
    const trigger = await request(apiUrl).post('/api/v1/projects/gl/builds').send({ branch: 'main' });
    const buildId = (trigger.body as ProjectTrigger).buildId as string;
    expect(`${trigger.status} ${buildId}`).toMatch(/^202 \S+/);

    // Both die at their crash point: the worker right after writing `succeeded`, the API once
    // its relay read that record's outbox entry (and before it queued anything for it).
    const exited = async (what: string, p: { exitCode: number | null; signalCode: string | null }) =>
      pollFor(what, () => (p.exitCode !== null || p.signalCode !== null ? p.signalCode : undefined), 90_000);
    expect(await exited('the worker to kill itself', worker.process)).toBe('SIGKILL');
    expect(await exited('the API to kill itself', api.process)).toBe('SIGKILL');
    worker = null;
    api = null;
    const path = `/api/v4/projects/acme%2Fhello/statuses/${sha}`;
    await sleep(1500);
    expect(forge.delivered(path)).not.toContain('success');
    const eventsOf = (): unknown[] =>
      forge.requests
        .filter((r) => r.path === '/receiver' && r.body.type !== undefined)
        .map((r) => r.body.type);
    expect(eventsOf()).not.toContain('build.succeeded');

    // A new API (no crash point) relays what the dead ones left.
    api = await startApiProcess(env);
    const record = (await request(apiUrl).get(`/api/v1/builds/${buildId}`).expect(200)).body as BuildRecord;
    expect(record.state).toBe('succeeded');
    await pollFor(
      'success at the forge',
      () => (forge.delivered(path).includes('success') ? true : undefined),
      30_000,
    );
    await pollFor(
      'build.succeeded at the receiver',
      () => (eventsOf().includes('build.succeeded') ? true : undefined),
      // The killed API may have held the receiver's delivery lock (60 s) when it died.
      90_000,
    );
    await sleep(3000); // anything sent twice would arrive by now
    // Each state once, in order (pending only if the build was still queued when its job ran).
    const states = forge.delivered(path);
    expect(states.filter((s) => s !== 'pending')).toEqual(['running', 'success']);
    expect(states.filter((s) => s === 'pending').length).toBeLessThanOrEqual(1);
    expect(eventsOf()).toEqual(['build.queued', 'build.started', 'build.succeeded']);
    const deliveries = forge.requests
      .filter((r) => r.path === '/receiver' && r.body.type !== undefined)
      .map((r) => r.headers['x-stratum-delivery']);
    expect(new Set(deliveries).size).toBe(3);
  });
});
