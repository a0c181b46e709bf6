import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';

/**
 * A Redis connection for Stratum. `maxRetriesPerRequest: null` is what BullMQ requires of
 * connections used by workers (blocking commands must not time out).
 */
export function createRedis(url: string, name = 'stratum'): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
  logConnectionErrors(redis, name);
  return redis;
}

/**
 * While Redis is unreachable ioredis reconnects by itself and emits an error per failed
 * attempt; without a listener it prints "Unhandled error event" with each. Logged once per
 * 10 s per connection instead (commands wait for the reconnect: maxRetriesPerRequest null).
 */
export function logConnectionErrors(redis: Redis, name: string): void {
  const logger = new Logger('Redis');
  let lastLogged = 0;
  redis.on('error', (err: Error) => {
    if (Date.now() - lastLogged >= 10_000) {
      lastLogged = Date.now();
      logger.warn(`${name}: ${err.message}`);
    }
  });
}

/** Key layout, in one place. */
export const RedisKeys = {
  build: (id: string) => `stratum:build:${id}`,
  buildEvents: (id: string) => `stratum:build:${id}:events`,
  buildCancel: (id: string) => `stratum:build:${id}:cancel`,
  /** Sorted set of every build id by creation time (ms). */
  buildIndex: 'stratum:builds',
  /** Sorted set of the ids of builds in `state`, by creation time (ms). */
  buildStateIndex: (state: string) => `stratum:builds:state:${state}`,
  /** Sorted set of the ids of finished builds by when their record expires (ms, Redis clock). */
  buildExpiryIndex: 'stratum:builds:expiry',
  cancelChannel: 'stratum:cancel',
  container: (id: string) => `stratum:container:${id}`,
  /** Sorted set of live container ids by creation time. */
  containerIndex: 'stratum:container:_index',
} as const;

/** BullMQ key prefix (its default, named so operators can find it). */
export const QUEUE_PREFIX = 'bull';
