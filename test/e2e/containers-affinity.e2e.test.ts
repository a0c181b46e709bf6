import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import request from 'supertest';
import { QUEUE_PREFIX } from '@stratum/jobs';
import {
  RedisServerHandle,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { BUSYBOX_FIXTURE } from '@stratum/testing';

// Worker affinity: two worker processes (different WORKER_IDs, one Redis, one DATA_DIR store).
// A container's upper dir lives on the worker that ran it; its commits and its removal must
// run there, whichever worker is idle. Real API (in process), workers from dist/ (npm run build).

jest.setTimeout(240_000);

const FIXTURE = BUSYBOX_FIXTURE;
const A = 'affinity-a';
const B = 'affinity-b';

let redis: RedisServerHandle;
let api: ApiServerHandle;
let dataDir: string;
let env: Record<string, string>;
const workers = new Map<string, WorkerProcessHandle>();

interface ContainerView {
  id: string;
  state: string;
  workerId: string | null;
  commits: { id: string; state: string; imageDigest: string | null; error: string | null }[];
}

function output(): string {
  return [...workers].map(([id, w]) => `--- ${id}\n${w.output().slice(-3000)}`).join('\n');
}

async function waitFor<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}\n${output()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function startWorker(id: string): Promise<void> {
  workers.set(id, await startWorkerProcess({ ...env, WORKER_ID: id, JOB_ATTEMPTS: '1' }));
}

async function stopWorker(id: string): Promise<void> {
  await workers.get(id)?.stop();
  workers.delete(id);
}

async function getContainer(id: string): Promise<ContainerView> {
  return (await request(api.url).get(`/api/v1/containers/${id}`).expect(200)).body as ContainerView;
}

async function run(cmd: string[]): Promise<ContainerView> {
  const created = await request(api.url)
    .post('/api/v1/containers')
    .send({ image: 'base:1', cmd })
    .expect(202);
  const id = (created.body as { id: string }).id;
  return waitFor(`container ${id} to exit`, async () => {
    const c = await getContainer(id);
    return c.state === 'exited' ? c : null;
  });
}

async function askCommit(id: string, tag: string): Promise<string> {
  const res = await request(api.url)
    .post(`/api/v1/containers/${id}/commit`)
    .send({ repository: 'affinity', tag })
    .expect(202);
  return (res.body as { commitId: string }).commitId;
}

async function commitDone(id: string, commitId: string): Promise<ContainerView['commits'][number]> {
  return waitFor(`commit ${commitId}`, async () => {
    const c = (await getContainer(id)).commits.find((x) => x.id === commitId);
    return c !== undefined && (c.state === 'succeeded' || c.state === 'failed') ? c : null;
  });
}

function containerDir(workerId: string, id: string): string {
  return join(dataDir, 'data', 'worker', workerId, 'containers', id);
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-e2e-affinity-'));
  const tar = join(dataDir, 'base.tar');
  execFileSync('bash', [FIXTURE, tar], { stdio: 'ignore' });
  redis = await startRedisServer();
  env = { REDIS_URL: redis.url, DATA_DIR: join(dataDir, 'data') };
  api = await startApiServer(testConfig({ ...env, WORKER_ID: 'affinity-api' }));
  await request(api.url)
    .post('/api/v1/images/import?repository=base&tag=1')
    .set('Content-Type', 'application/x-tar')
    .send(readFileSync(tar))
    .expect(201);
});

afterAll(async () => {
  for (const id of [...workers.keys()]) {
    await stopWorker(id);
  }
  await api?.close();
  await redis?.stop();
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(' - overlay ') && dataDir !== undefined && l.split(' ')[4].startsWith(dataDir));
  rmSync(dataDir, { recursive: true, force: true });
  expect(mounts).toEqual([]);
});

describe('two workers: commits and removals run on the worker holding the container', () => {
  let onA: ContainerView;
  let onB: ContainerView;

  it('records which worker ran each container', async () => {
    // One worker up at a time, so each container lands where we want it.
    await startWorker(A);
    onA = await run(['sh', '-c', 'echo from-a > /which']);
    expect(onA.workerId).toBe(A);
    await stopWorker(A);
    await startWorker(B);
    onB = await run(['sh', '-c', 'echo from-b > /which']);
    expect(onB.workerId).toBe(B);
    await startWorker(A); // same WORKER_ID: its upper dirs are still there
    expect(existsSync(join(containerDir(A, onA.id), 'upper', 'which'))).toBe(true);
    expect(existsSync(join(containerDir(B, onB.id), 'upper', 'which'))).toBe(true);
  });

  it('with both workers up, every commit lands on the owning worker', async () => {
    const asked: [ContainerView, string][] = [];
    for (let i = 0; i < 3; i++) {
      for (const c of [onA, onB]) {
        asked.push([c, await askCommit(c.id, `${c.workerId}-${i}`)]);
      }
    }
    for (const [c, commitId] of asked) {
      expect(await commitDone(c.id, commitId)).toMatchObject({ state: 'succeeded', error: null });
    }
    const logs = { [A]: workers.get(A)!.output(), [B]: workers.get(B)!.output() };
    expect(logs[A]).toContain(`committed container ${onA.id}`);
    expect(logs[A]).not.toContain(`committed container ${onB.id}`);
    expect(logs[B]).toContain(`committed container ${onB.id}`);
    expect(logs[B]).not.toContain(`committed container ${onA.id}`);

    // Each commit job went through the owner's own queue, none through the shared one.
    const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    try {
      for (const [c, commitId] of asked) {
        const own = new Queue(`commit.${c.workerId}`, { connection: conn, prefix: QUEUE_PREFIX });
        const shared = new Queue('commit', { connection: conn, prefix: QUEUE_PREFIX });
        expect(await (await own.getJob(commitId))?.getState()).toBe('completed');
        expect(await shared.getJob(commitId)).toBeUndefined();
        await own.close();
        await shared.close();
      }
    } finally {
      conn.disconnect();
    }

    // The committed images hold each container's own change.
    for (const [who, ref] of [
      ['from-a', `affinity:${A}-0`],
      ['from-b', `affinity:${B}-0`],
    ]) {
      const created = await request(api.url)
        .post('/api/v1/containers')
        .send({ image: ref, cmd: ['cat', '/which'] })
        .expect(202);
      const id = (created.body as { id: string }).id;
      const done = await waitFor(`container ${id}`, async () => {
        const res = await request(api.url).get(`/api/v1/containers/${id}`).expect(200);
        return res.body.state === 'exited' ? (res.body as { logs: { stdout: string } }) : null;
      });
      expect(done.logs.stdout).toBe(`${who}\n`);
    }
  });

  it('waits for the owning worker when it is down, while the other stays idle', async () => {
    await stopWorker(B);
    const commitId = await askCommit(onB.id, 'while-b-was-down');
    await new Promise((r) => setTimeout(r, 3000));
    const pending = (await getContainer(onB.id)).commits.find((c) => c.id === commitId);
    expect(pending?.state).toBe('queued');
    expect(workers.get(A)!.output()).not.toContain(`committed container ${onB.id}`);
    // The gone worker's queue is shown, with no worker and the commit waiting for it.
    const queues = (await request(api.url).get('/api/v1/queues').expect(200)).body as {
      queues: { name: string; workers: string[]; counts: Record<string, number> }[];
      workers: string[];
    };
    const onBQueue = queues.queues.find((q) => q.name === `commit.${B}`);
    expect(onBQueue?.workers).toEqual([]);
    expect(Object.values(onBQueue?.counts ?? {}).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(queues.workers).not.toContain(B);
    await startWorker(B);
    expect(await commitDone(onB.id, commitId)).toMatchObject({ state: 'succeeded' });
  });

  it('removal deletes the files on the owning worker (a job on its queue)', async () => {
    for (const c of [onA, onB]) {
      await request(api.url).delete(`/api/v1/containers/${c.id}`).expect(200);
    }
    for (const c of [onA, onB]) {
      const dir = containerDir(c.workerId!, c.id);
      await waitFor(`files of ${c.id} removed`, async () => (existsSync(dir) ? null : true), 15_000);
    }
    expect(workers.get(A)!.output()).toContain(
      `removed the files of container ${onA.id} (remove-container job)`,
    );
    expect(workers.get(B)!.output()).toContain(
      `removed the files of container ${onB.id} (remove-container job)`,
    );
  });
});
