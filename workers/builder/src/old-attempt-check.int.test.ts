import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '@stratum/config';
import { WorkerRegistry } from '@stratum/jobs';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { OldAttemptCheck } from './old-attempt-check';

// A build taken over from a worker on another host (its scratch dir is not here): the check
// reads that worker's liveness record in a real redis-server, written here as the old worker
// would (its heartbeat every WORKER_LOST_MS / 8, listing the jobs it runs).

const LOST_MS = 2_000; // heartbeat 250 ms, record lasts 750 ms
let server: RedisServerHandle;
let redis: Redis;
let registry: WorkerRegistry;
let check: OldAttemptCheck;
let dataDir: string;
let beat: NodeJS.Timeout | null = null;

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
  registry = new WorkerRegistry(redis);
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-old-attempt-'));
  const config = loadConfig({
    REDIS_URL: server.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'taker',
    WORKER_LOST_MS: String(LOST_MS),
  });
  check = new OldAttemptCheck(config, registry);
});

afterEach(() => stopBeating());

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The old worker's heartbeat, as QueueWorkersService sends it, with the jobs `jobs()` names. */
async function heartbeat(workerId: string, jobs: () => string[]): Promise<void> {
  const send = (): Promise<void> => registry.advertise(workerId, ['linux/amd64'], 750, jobs());
  await send();
  beat = setInterval(() => void send(), 250);
}

function stopBeating(): void {
  if (beat !== null) {
    clearInterval(beat);
    beat = null;
  }
}

it('an old worker with no liveness record is gone: no wait', async () => {
  const started = Date.now();
  await expect(check.clear('b-gone', 'host-gone')).resolves.toEqual({
    message:
      'worker host-gone is gone (its heartbeat lapsed); its containers are not on this host: its death watch removes them when it dies',
    waitedMs: 0,
  });
  expect(Date.now() - started).toBeLessThan(200);
});

it('an old worker alive but not running the build: no wait', async () => {
  await heartbeat('host-idle', () => ['another-build']);
  await expect(check.clear('b-idle', 'host-idle')).resolves.toEqual({
    message: 'worker host-idle is alive on another host and stopped its attempt of this build',
    waitedMs: 0,
  });
});

it('an old worker still running the build: waits until its heartbeat no longer lists it', async () => {
  let jobs = ['b-run', 'other'];
  await heartbeat('host-run', () => jobs);
  setTimeout(() => (jobs = ['other']), 600);
  const r = await check.clear('b-run', 'host-run');
  expect(r.message).toMatch(
    /^worker host-run is alive on another host and stopped its attempt of this build after \d+ ms$/,
  );
  // it stopped at 600 ms; its next heartbeat (every 250 ms) says so, seen within a poll (250 ms)
  expect(r.waitedMs).toBeGreaterThanOrEqual(550);
  expect(r.waitedMs).toBeLessThan(1_300);
});

it('an old worker that dies while running the build: waits until its record lapses', async () => {
  await heartbeat('host-dies', () => ['b-dies.linux-arm64']);
  setTimeout(stopBeating, 300);
  const r = await check.clear('b-dies', 'host-dies');
  expect(r.message).toMatch(/^worker host-dies is gone \(its heartbeat lapsed after \d+ ms\); /);
  // last heartbeat at ~250 ms, lapsing 750 ms later
  expect(r.waitedMs).toBeGreaterThanOrEqual(700);
  expect(r.waitedMs).toBeLessThan(1_600);
});

it('an old worker that keeps running the build: the attempt fails after WORKER_LOST_MS, naming it', async () => {
  await heartbeat('host-stuck', () => ['b-stuck']);
  const started = Date.now();
  await expect(check.clear('b-stuck', 'host-stuck')).rejects.toThrow(
    /^worker host-stuck, which ran the attempt before, is alive \(heartbeat \d+ ms ago\) and still runs this build \d+ ms after it was taken over \(WORKER_LOST_MS=2000\): not running the steps twice at once; the attempt is retried$/,
  );
  const took = Date.now() - started;
  expect(took).toBeGreaterThanOrEqual(LOST_MS);
  expect(took).toBeLessThan(LOST_MS + 1_000);
});

it('an advert of an older worker (no job list) counts as running the build', async () => {
  await redis.hset(
    'stratum:workers:platforms',
    'host-old',
    JSON.stringify({ workerId: 'host-old', platforms: [], expiresAt: Date.now() + 500 }),
  );
  const r = await check.clear('b-old', 'host-old');
  expect(r.message).toMatch(/^worker host-old is gone \(its heartbeat lapsed after \d+ ms\)/);
  expect(r.waitedMs).toBeGreaterThanOrEqual(400);
});
