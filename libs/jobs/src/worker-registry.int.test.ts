import { Redis } from 'ioredis';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { WORKER_ADVERTS_KEY, WORKER_SEEN_KEY, WorkerRegistry } from './worker-registry';

// The worker registry against a real redis-server, with a clock the test moves: live while the
// advert lasts, gone since its expiry (or since a clean withdraw), remembered until forgotten.

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

it('a crashed worker is gone since its advert expired, a stopped one since it withdrew; forget drops both', async () => {
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

  // The crashed one stops re-advertising: gone since its advert's expiry, not since it was noticed.
  now = 1_000_000 + 45_000; // its advert lapsed at 1_030_000
  expect(await registry.liveness('crashed')).toEqual({
    workerId: 'crashed',
    live: false,
    platforms: [],
    goneSince: 1_030_000,
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
