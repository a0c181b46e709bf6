import { Redis } from 'ioredis';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { WORKER_ADVERTS_KEY, WORKER_SEEN_KEY, WorkerRegistry } from './worker-registry';

// The worker registry against a real redis-server, with a clock the test moves: live while the
// advert lasts, gone since its last heartbeat (or since a clean withdraw), remembered until forgotten.

let server: RedisServerHandle;
let redis: Redis;
let now = 1_000_000;
let registry: WorkerRegistry;

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
  registry = new WorkerRegistry(redis, () => now);
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

it('a crashed worker is gone since its last heartbeat once its advert lapsed, a stopped one since it withdrew; forget drops both', async () => {
  await registry.advertise('crashed', ['linux/amd64'], 30_000);
  await registry.advertise('stopped', ['linux/arm64'], 30_000);
  expect(await registry.all()).toEqual([
    { workerId: 'crashed', live: true, platforms: ['linux/amd64'], goneSince: null },
    { workerId: 'stopped', live: true, platforms: ['linux/arm64'], goneSince: null },
  ]);

  now += 5_000;
  await registry.withdraw('stopped');
  now += 1_000;
  expect(await registry.liveness('stopped')).toEqual({
    workerId: 'stopped',
    live: false,
    platforms: [],
    goneSince: 1_005_000,
  });
  expect((await registry.liveness('crashed')).live).toBe(true);

  // The crashed one stops re-advertising: once its advert lapsed (at 1_030_000) it is gone
  // since its last heartbeat, not since its record lapsed or was noticed.
  now = 1_000_000 + 45_000;
  expect(await registry.liveness('crashed')).toEqual({
    workerId: 'crashed',
    live: false,
    platforms: [],
    goneSince: 1_000_000,
  });
  expect(await registry.platforms()).toEqual(new Set());

  // An id known only from a queue or a record starts its clock when first asked about, once.
  expect((await registry.all(['from-a-queue'])).find((w) => w.workerId === 'from-a-queue')).toEqual({
    workerId: 'from-a-queue',
    live: false,
    platforms: [],
    goneSince: 1_045_000,
  });
  now += 10_000;
  expect((await registry.liveness('from-a-queue')).goneSince).toBe(1_045_000);

  // Coming back makes it live again.
  await registry.advertise('stopped', ['linux/arm64'], 30_000);
  expect((await registry.liveness('stopped')).live).toBe(true);

  await registry.forget('crashed');
  expect(await redis.hexists(WORKER_SEEN_KEY, 'crashed')).toBe(0);
  expect(await redis.hexists(WORKER_ADVERTS_KEY, 'crashed')).toBe(0);
  expect((await registry.all()).map((w) => w.workerId)).toEqual(['from-a-queue', 'stopped']);
});

it('a live advert says when it was written and which jobs the worker ran; none once it lapsed or was withdrawn', async () => {
  now = 2_000_000;
  await registry.advertise('busy', ['linux/amd64'], 3_000, ['b1', 'b2.linux-arm64']);
  expect(await registry.advert('busy')).toEqual({
    workerId: 'busy',
    platforms: ['linux/amd64'],
    expiresAt: 2_003_000,
    seenAt: 2_000_000,
    jobs: ['b1', 'b2.linux-arm64'],
  });
  now += 2_999;
  expect((await registry.advert('busy'))?.jobs).toEqual(['b1', 'b2.linux-arm64']);
  now += 1;
  expect(await registry.advert('busy')).toBeNull();
  expect(await registry.liveness('busy')).toMatchObject({ live: false, goneSince: 2_000_000 });

  await registry.advertise('busy', ['linux/amd64'], 3_000);
  expect((await registry.advert('busy'))?.jobs).toEqual([]);
  await registry.withdraw('busy');
  expect(await registry.advert('busy')).toBeNull();
  expect(await registry.advert('never-seen')).toBeNull();
  // An advert of an older worker (no seenAt, no jobs) still counts; garbage does not.
  await redis.hset(
    WORKER_ADVERTS_KEY,
    'old',
    JSON.stringify({ workerId: 'old', platforms: [], expiresAt: now + 1 }),
  );
  expect(await registry.advert('old')).toEqual({ workerId: 'old', platforms: [], expiresAt: now + 1 });
  await redis.hset(WORKER_ADVERTS_KEY, 'junk', '{"platforms":"x"}');
  expect(await registry.advert('junk')).toBeNull();
});
