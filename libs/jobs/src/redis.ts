import { Redis } from 'ioredis';

/**
 * A Redis connection for Stratum. `maxRetriesPerRequest: null` is what BullMQ requires of
 * connections used by workers (blocking commands must not time out).
 */
export function createRedis(url: string, name = 'stratum'): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false });
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
