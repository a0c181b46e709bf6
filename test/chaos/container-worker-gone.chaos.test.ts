import { defaultRuntimePath } from '@stratum/config';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import request from 'supertest';
import { QUEUE_PREFIX, WORKER_SEEN_KEY } from '@stratum/jobs';
import { listOverlayMountsUnder, unmountOverlay } from '@stratum/layers';
import { BUSYBOX_FIXTURE } from '@stratum/testing';
import { launchChromium } from '../support/chromium';
import { runCli } from '../support/cli';
import { ChaosStack, pollFor, runcContainers, startChaosStack } from './chaos-support';

// Issue 20 item 3: a container's files live on the worker that ran it, so its commits and its
// removal wait on that worker's own queue. When that worker is SIGKILLed and never returns,
// they must not wait forever: they fail CONTAINER_WORKER_TIMEOUT_MS after its last heartbeat,
// naming the worker, the queues view shows the worker gone, and what it left is listed by
// `stratum workers ls` and dropped by `stratum workers rm` (refused while a worker is live).
// Real redis-server, API in process, workers from dist/ (npm run build).

jest.setTimeout(240_000);

const GONE = 'gone-host';
const LIVE = 'live-host';
// The queues view can show the worker gone only between its liveness lapsing and the commit
// failing: with 3 s that window was missed under a loaded fresh-root run, so it is wider.
const TIMEOUT_MS = 8000;

let stack: ChaosStack;

interface ContainerView {
  id: string;
  state: string;
  workerId: string | null;
  commits: { id: string; state: string; error: string | null }[];
}

async function getContainer(id: string): Promise<ContainerView> {
  return (await request(stack.api.url).get(`/api/v1/containers/${id}`).expect(200)).body as ContainerView;
}

async function runContainer(cmd: string[], until: string): Promise<ContainerView> {
  const created = await request(stack.api.url)
    .post('/api/v1/containers')
    .send({ image: 'base:1', cmd, network: 'none' })
    .expect(202);
  const id = (created.body as { id: string }).id;
  return pollFor(
    `container ${id} ${until}`,
    async () => {
      const c = await getContainer(id);
      return c.state === until ? c : undefined;
    },
    60_000,
  );
}

beforeAll(async () => {
  stack = await startChaosStack('worker-gone', 'worker-gone-api', {
    CONTAINER_WORKER_TIMEOUT_MS: String(TIMEOUT_MS),
  });
  const tar = join(stack.dataDir, 'base.tar');
  execFileSync('bash', [BUSYBOX_FIXTURE, tar], { stdio: 'ignore' });
  await request(stack.api.url)
    .post('/api/v1/images/import?repository=base&tag=1')
    .set('Content-Type', 'application/x-tar')
    .send(readFileSync(tar))
    .expect(201);
});

afterAll(async () => {
  // The SIGKILLed worker's container is killed by its death watch; make sure nothing stays.
  const root = join(stack.dataDir, 'worker', GONE, 'runc');
  for (const id of runcContainers(root)) {
    execFileSync(defaultRuntimePath(), ['--root', root, 'delete', '--force', id], { stdio: 'ignore' });
  }
  // Its containers' overlays stay mounted (a worker that never returns never sweeps them).
  for (const m of await listOverlayMountsUnder(stack.dataDir)) {
    await unmountOverlay(m.target);
  }
  await stack?.close();
});

it('fails commits and removals of a SIGKILLed worker’s containers after the timeout, and forgets it on request', async () => {
  const worker = await stack.startWorker(GONE);
  const exited = await runContainer(['sh', '-c', 'echo kept > /f'], 'exited');
  const running = await runContainer(['sleep', '600'], 'running');
  expect([exited.workerId, running.workerId]).toEqual([GONE, GONE]);

  const killedAt = Date.now();
  worker.process.kill('SIGKILL');
  await new Promise((r) => worker.process.once('exit', r));

  // Asked while the worker's heartbeat has not lapsed yet (it may be restarting): queued.
  const asked = await request(stack.api.url)
    .post(`/api/v1/containers/${exited.id}/commit`)
    .send({ repository: 'gone', tag: 'v1' })
    .expect(202);
  const commitId = (asked.body as { commitId: string }).commitId;

  // The queues view lists the worker's queue holding the commit, then names the worker gone.
  const gone = await pollFor(
    'the queues view to show the worker gone',
    async () => {
      const res = await request(stack.api.url).get('/api/v1/queues').expect(200);
      const q = (
        res.body as {
          queues: { name: string; counts: Record<string, number>; owner?: { goneSince: string | null } }[];
        }
      ).queues.find((x) => x.name === `commit.${GONE}`);
      return q?.owner?.goneSince ? q : undefined;
    },
    60_000,
  );
  expect(gone.counts.waiting).toBe(1);
  const goneSince = Date.parse(gone.owner!.goneSince!);
  const goneSeenAt = Date.now();

  // The queued commit fails once the worker has been gone for the timeout, naming it.
  const failed = await pollFor(
    'the queued commit to fail',
    async () => {
      const c = (await getContainer(exited.id)).commits.find((x) => x.id === commitId);
      return c?.state === 'failed' ? c : undefined;
    },
    30_000,
    100,
  );
  const failedAt = Date.now();
  expect(failed.error).toContain(`worker ${GONE} that holds container ${exited.id} is gone since`);
  expect(failed.error).toContain(`stratum workers rm ${GONE}`);
  // Measured from its last heartbeat: not before the timeout, and at most a sweep after.
  expect(failedAt - goneSince).toBeGreaterThanOrEqual(TIMEOUT_MS);
  expect(failedAt - Math.max(goneSince + TIMEOUT_MS, goneSeenAt)).toBeLessThan(5000);
  process.stdout.write(
    `worker killed -> last heartbeat ${killedAt - goneSince} ms before the kill, commit failed ${failedAt - killedAt} ms after the kill\n`,
  );

  // New requests fail at once: 503 with the same message.
  const commitNow = await request(stack.api.url)
    .post(`/api/v1/containers/${exited.id}/commit`)
    .send({ repository: 'gone', tag: 'v2' })
    .expect(503);
  expect(commitNow.body).toMatchObject({ code: 'WORKER_GONE' });
  expect(JSON.stringify(commitNow.body)).toContain(
    `worker ${GONE} that holds container ${exited.id} is gone since`,
  );
  for (const c of [exited, running]) {
    const rm = await request(stack.api.url).delete(`/api/v1/containers/${c.id}`).expect(503);
    expect(JSON.stringify(rm.body)).toContain(`worker ${GONE} that holds container ${c.id} is gone since`);
  }
  // The failed commit left nothing waiting on the gone worker's queue.
  const redis = new Redis(stack.redisServer.url);
  try {
    expect(await redis.llen(`${QUEUE_PREFIX}:commit.${GONE}:wait`)).toBe(0);
  } finally {
    redis.disconnect();
  }

  // The dashboard's Queues page lists the gone worker with what it left (headless Chromium).
  const chrome = await launchChromium();
  try {
    const { page } = chrome;
    await page.goto(`${stack.api.url}/#/queues`);
    const row = page.locator(`#gone-workers tr[data-worker="${GONE}"]`);
    await row.waitFor({ timeout: 20_000 });
    expect((await row.locator('td').allInnerTexts()).slice(3)).toEqual(['2', '0']);
  } finally {
    await chrome.close();
  }

  // The leftovers are listed, a live worker cannot be forgotten, an unknown one is a 404.
  await stack.startWorker(LIVE);
  const ls = await runCli(['workers', 'ls'], { url: stack.api.url });
  expect(ls.code).toBe(0);
  const rows = ls.stdout.split('\n');
  expect(rows.find((l) => l.startsWith(GONE))).toMatch(
    new RegExp(`^${GONE}\\s+gone since .* ago\\s+2\\s+0\\s`),
  );
  expect(rows.find((l) => l.startsWith(LIVE))).toMatch(new RegExp(`^${LIVE}\\s+live\\s+0\\s+0\\s+linux/`));
  const listed = (await request(stack.api.url).get('/api/v1/workers').expect(200)).body as {
    id: string;
    live: boolean;
    containers: string[];
  }[];
  expect(listed.find((w) => w.id === GONE)).toMatchObject({ live: false });
  expect(listed.find((w) => w.id === GONE)!.containers.sort()).toEqual([exited.id, running.id].sort());

  const refused = await runCli(['workers', 'rm', LIVE], { url: stack.api.url });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain(`worker ${LIVE} is live`);
  await request(stack.api.url).delete('/api/v1/workers/no-such-host').expect(404);

  const rm = await runCli(['workers', 'rm', GONE], { url: stack.api.url });
  expect(rm.stderr).toBe('');
  expect(rm.code).toBe(0);
  expect(rm.stdout).toBe(`${GONE}: 2 container(s) removed, 0 queued job(s) dropped\n`);
  for (const c of [exited, running]) {
    expect((await getContainer(c.id)).state).toBe('removed');
  }
  const after = (await request(stack.api.url).get('/api/v1/workers').expect(200)).body as { id: string }[];
  expect(after.map((w) => w.id)).toEqual([LIVE]);
  const check = new Redis(stack.redisServer.url);
  try {
    expect(await check.keys(`${QUEUE_PREFIX}:commit.${GONE}:*`)).toEqual([]);
    expect(await check.hexists(WORKER_SEEN_KEY, GONE)).toBe(0);
  } finally {
    check.disconnect();
  }
});
