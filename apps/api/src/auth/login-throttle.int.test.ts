import type { Redis } from 'ioredis';
import { createRedis } from '@stratum/jobs';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { clientKey, LoginThrottle, LoginThrottledError } from './login-throttle';

let server: RedisServerHandle;
let redis: Redis;

beforeAll(async () => {
  server = await startRedisServer();
  redis = createRedis(server.url, 'login-throttle');
});

afterAll(async () => {
  await redis.quit();
  await server.stop();
});

beforeEach(async () => {
  await redis.flushall();
});

const outcome = (p: Promise<void>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof LoginThrottledError ? `429 ${e.retryAfterSeconds}` : String(e)),
  );

describe('LoginThrottle', () => {
  it('of 20 attempts at once, the free ones and one more go through; the rest wait', async () => {
    const t = new LoginThrottle(redis, { freeAttempts: 5, backoffMaxSeconds: 900, hashThreads: 1 });
    const results = await Promise.all(
      Array.from({ length: 20 }, () => outcome(t.attempt('alice', '10.0.0.1'))),
    );
    expect(results.filter((r) => r === 'ok')).toHaveLength(6);
    expect(results.filter((r) => r === '429 1')).toHaveLength(14);
  });

  it('doubles the lock-out with each attempt past the free ones, up to the longest', async () => {
    const t = new LoginThrottle(redis, { freeAttempts: 1, backoffMaxSeconds: 4, hashThreads: 1 });
    const locks: number[] = [];
    for (let i = 0; i < 5; i++) {
      // Each attempt is let through by expiring the lock the one before set.
      const held = await redis.keys('stratum:login:lock:*');
      if (held.length > 0) {
        await redis.del(...held);
      }
      await t.attempt('alice', '10.0.0.1');
      locks.push(await redis.pttl((await redis.keys('stratum:login:lock:user:*'))[0] ?? 'none'));
    }
    // attempt 1 free (no lock), then 1 s, 2 s, 4 s, 4 s
    expect(locks.map((ms) => (ms < 0 ? 0 : Math.ceil(ms / 1000)))).toEqual([0, 1, 2, 4, 4]);
  });

  it('counts per user name across addresses and per address across names', async () => {
    const t = new LoginThrottle(redis, { freeAttempts: 2, backoffMaxSeconds: 900, hashThreads: 1 });
    for (const addr of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) {
      await t.attempt('alice', addr);
    }
    expect(await outcome(t.attempt('alice', '10.0.0.4'))).toBe('429 1');
    for (const user of ['u1', 'u2', 'u3']) {
      await t.attempt(user, '10.9.9.9');
    }
    expect(await outcome(t.attempt('u4', '10.9.9.9'))).toBe('429 1');
    expect(await outcome(t.attempt('bob', '10.0.0.5'))).toBe('ok');
  });

  it('a right password starts the user’s count again and takes its attempt back from the address', async () => {
    const t = new LoginThrottle(redis, { freeAttempts: 2, backoffMaxSeconds: 900, hashThreads: 1 });
    await t.attempt('alice', '10.0.0.1');
    await t.attempt('alice', '10.0.0.1');
    await t.succeeded('alice', '10.0.0.1');
    const [userCount] = await redis.keys('stratum:login:count:user:*');
    expect(userCount).toBeUndefined();
    expect(await redis.get('stratum:login:count:addr:10.0.0.1')).toBe('1');
  });
});

describe('clientKey', () => {
  it('counts IPv4-mapped addresses as IPv4 and IPv6 per /64', () => {
    expect(clientKey('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(clientKey('2001:db8:0:1:aaaa::1')).toBe('2001:db8:0:1::/64');
    expect(clientKey('2001:DB8:0:1:bbbb:cccc:dddd:eeee')).toBe('2001:db8:0:1::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey(undefined)).toBe('unknown');
  });
});
