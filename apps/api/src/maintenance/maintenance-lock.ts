import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Compare-and-delete, so a holder whose lock expired does not release another's. */
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export const MaintenanceKeys = {
  lock: (task: string) => `stratum:maintenance:lock:${task}`,
  runs: 'stratum:maintenance:runs',
} as const;

/**
 * One holder at a time across API replicas: SET NX PX with a random token. `run` answers null
 * when another replica holds the lock.
 */
export class MaintenanceLock {
  constructor(private readonly redis: Redis) {}

  async run<T>(task: string, ttlMs: number, fn: () => Promise<T>): Promise<{ value: T } | null> {
    const key = MaintenanceKeys.lock(task);
    const token = randomBytes(16).toString('hex');
    if ((await this.redis.set(key, token, 'PX', ttlMs, 'NX')) !== 'OK') {
      return null;
    }
    // Keep the lock while the task runs longer than expected.
    const renew = setInterval(() => {
      this.redis.eval(RENEW, 1, key, token, ttlMs).catch(() => undefined);
    }, ttlMs / 3);
    renew.unref();
    try {
      return { value: await fn() };
    } finally {
      clearInterval(renew);
      await this.redis.eval(RELEASE, 1, key, token).catch(() => undefined);
    }
  }

  /** Claims a one-off slot (a scheduled fire time) for `ttlMs`; true for the one replica that gets it. */
  async claim(slot: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(MaintenanceKeys.lock(slot), '1', 'PX', ttlMs, 'NX')) === 'OK';
  }
}
