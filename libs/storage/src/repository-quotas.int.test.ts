// RedisQuotaLedger against a real redis-server: a blob counts once per pattern however many of
// its repositories hold it; a refused write records nothing; writers racing for the last bytes
// cannot together pass the limit; release and recompute.
import { Redis } from 'ioredis';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { BlobDigest } from './blob-store';
import { RedisQuotaLedger } from './repository-quotas';

let server: RedisServerHandle;
let redis: Redis;

const d = (n: number): BlobDigest => `sha256:${n.toString(16).padStart(64, '0')}`;
const used = async (ledger: RedisQuotaLedger): Promise<Record<string, number>> =>
  Object.fromEntries((await ledger.usage()).map((u) => [u.pattern, u.usedBytes]));

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
});

afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

beforeEach(async () => {
  await redis.flushdb();
});

it('counts a blob once per pattern, refuses past the limit recording nothing, releases when the last holder goes', async () => {
  const ledger = new RedisQuotaLedger(redis, [
    { pattern: 'team/*', limitBytes: 1000 },
    { pattern: '*', limitBytes: 10_000 },
  ]);
  expect(ledger.matching('team/app').map((r) => r.pattern)).toEqual(['team/*', '*']);
  expect(
    await ledger.admit('team/app', [
      { digest: d(1), size: 400 },
      { digest: d(2), size: 300 },
    ]),
  ).toEqual({ refusal: null });
  // the same blobs in another repository of the pattern: nothing new
  expect(await ledger.admit('team/web', [{ digest: d(1), size: 400 }])).toEqual({ refusal: null });
  expect(await used(ledger)).toEqual({ 'team/*': 700, '*': 700 });
  // 700 + 200 + 200 > 1000: refused as a whole, d(3) not recorded either
  const { refusal } = await ledger.admit('team/web', [
    { digest: d(3), size: 200 },
    { digest: d(4), size: 200 },
  ]);
  expect(refusal).toEqual({
    repository: 'team/web',
    pattern: 'team/*',
    usedBytes: 700,
    limitBytes: 1000,
    addBytes: 400,
  });
  expect(await ledger.holds('team/web', d(3))).toBe(false);
  expect(await used(ledger)).toEqual({ 'team/*': 700, '*': 700 });
  // outside team/*: only * counts
  expect(await ledger.admit('other', [{ digest: d(3), size: 2000 }])).toEqual({ refusal: null });
  expect(await used(ledger)).toEqual({ 'team/*': 700, '*': 2700 });
  // team/web lets d(1) go: team/app still holds it
  await ledger.release('team/web', [d(1)]);
  expect(await used(ledger)).toEqual({ 'team/*': 700, '*': 2700 });
  await ledger.release('team/app', [d(1), d(2)]);
  expect(await used(ledger)).toEqual({ 'team/*': 0, '*': 2000 });
});

it('writers racing for the last bytes cannot together pass the limit', async () => {
  const ledger = new RedisQuotaLedger(redis, [{ pattern: 'race/*', limitBytes: 1000 }]);
  const results = await Promise.all(
    Array.from({ length: 25 }, (_, i) => ledger.admit(`race/r${i % 3}`, [{ digest: d(100 + i), size: 100 }])),
  );
  expect(results.filter((r) => r.refusal === null)).toHaveLength(10);
  expect(await used(ledger)).toEqual({ 'race/*': 1000 });
});

it('recompute replaces the counters and marks them current for these patterns', async () => {
  const ledger = new RedisQuotaLedger(redis, [{ pattern: 'team/*', limitBytes: 1000 }]);
  expect(await ledger.stale()).toBe(true);
  await ledger.admit('team/app', [{ digest: d(1), size: 900 }]);
  await ledger.recompute(
    new Map([
      ['team/app', new Map([[d(2), 100]])],
      ['team/web', new Map([[d(2), 100]])],
      ['elsewhere', new Map([[d(3), 5000]])],
    ]),
  );
  expect(await ledger.stale()).toBe(false);
  expect(await used(ledger)).toEqual({ 'team/*': 100 });
  expect(await ledger.holds('team/app', d(1))).toBe(false);
  expect([...(await ledger.counted('team/web')).entries()]).toEqual([[d(2), 100]]);
  await ledger.release('team/app', [d(2)]);
  expect(await used(ledger)).toEqual({ 'team/*': 100 });
  await ledger.release('team/web', [d(2)]);
  expect(await used(ledger)).toEqual({ 'team/*': 0 });
  // other patterns: stale again
  expect(await new RedisQuotaLedger(redis, [{ pattern: 'x/*', limitBytes: 1 }]).stale()).toBe(true);
});
