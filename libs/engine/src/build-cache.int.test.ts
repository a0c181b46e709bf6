// The Redis step-cache index against a real redis-server: entries expire unless builds use
// them, and reading a fresh entry writes nothing (a warm build's lookups are reads only).
import { Redis } from 'ioredis';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { BuildCacheRecord, cacheMemoKey, cacheRecordKey, RedisBuildCacheIndex } from './build-cache';

let server: RedisServerHandle;
let redis: Redis;
const TTL = 1000;
const record: BuildCacheRecord = {
  version: 1,
  layer: null,
  history: { created_by: 'RUN true' },
  recordedAt: '2026-01-01T00:00:00.000Z',
};

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

async function writesSince(fn: () => Promise<unknown>): Promise<number> {
  // rdb_changes_since_last_save counts every write Redis applied.
  const changes = async (): Promise<number> =>
    Number(/rdb_changes_since_last_save:(\d+)/.exec(await redis.info('persistence'))?.[1]);
  const before = await changes();
  await fn();
  await new Promise((r) => setTimeout(r, 50)); // a renewal is sent without waiting
  return (await changes()) - before;
}

it('reads a fresh entry without writing, and renews one whose TTL has run down', async () => {
  const index = new RedisBuildCacheIndex(redis, TTL);
  await index.put('k1', record);
  await index.putMemo('m1', 'sha256:abc');

  expect(await writesSince(() => index.get('k1'))).toBe(0);
  expect(await writesSince(() => index.getMemo('m1'))).toBe(0);
  expect(await index.get('k1')).toEqual(record);
  expect(await index.getMemo('m1')).toBe('sha256:abc');

  // Run the TTL down past the slack (a tenth of it): the next read gives it the full TTL.
  await redis.expire(cacheRecordKey('k1'), TTL - 200);
  await redis.expire(cacheMemoKey('m1'), TTL - 200);
  expect(await writesSince(() => index.get('k1'))).toBe(1);
  expect(await writesSince(() => index.getMemo('m1'))).toBe(1);
  expect(await redis.ttl(cacheRecordKey('k1'))).toBeGreaterThan(TTL - 5);
  expect(await redis.ttl(cacheMemoKey('m1'))).toBeGreaterThan(TTL - 5);
});

it('answers a miss (and a record of another format) with null', async () => {
  const index = new RedisBuildCacheIndex(redis, TTL);
  expect(await index.get('missing')).toBeNull();
  expect(await index.getMemo('missing')).toBeNull();
  await redis.set(cacheRecordKey('old'), JSON.stringify({ version: 0 }));
  expect(await index.get('old')).toBeNull();
});
