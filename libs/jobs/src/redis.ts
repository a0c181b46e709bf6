import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import type { RedisSentinelConfig } from '@stratum/config';

/**
 * A Redis connection for Stratum. `maxRetriesPerRequest: null` is what BullMQ requires of
 * connections used by workers (blocking commands must not time out).
 */
export function createRedis(
  url: string,
  name = 'stratum',
  sentinel: RedisSentinelConfig | null = null,
): Redis {
  const options = { maxRetriesPerRequest: null, connectionName: name, lazyConnect: false };
  // With Sentinel, ioredis asks the sentinels for the current primary and follows a failover
  // (it reconnects to the promoted replica); REDIS_URL still gives the password and the db.
  const redis =
    sentinel === null
      ? new Redis(url, options)
      : new Redis({
          ...options,
          ...credentialsOf(url),
          sentinels: [...sentinel.sentinels],
          name: sentinel.name,
        });
  logConnectionErrors(redis, name);
  return redis;
}

/** Password, user and db of a redis:// URL (what a Sentinel connection keeps from REDIS_URL). */
function credentialsOf(url: string): { username?: string; password?: string; db?: number } {
  const u = new URL(url);
  const db = Number(u.pathname.replace(/^\//, '') || '0');
  return {
    ...(u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== '' ? { password: decodeURIComponent(u.password) } : {}),
    ...(Number.isInteger(db) && db > 0 ? { db } : {}),
  };
}

/**
 * Logs an emitter's `error` events at most once per `everyMs` (as warnings). While Redis is
 * unreachable, ioredis connections, BullMQ queues and workers emit an error per reconnect
 * attempt; unlistened, ioredis prints "Unhandled error event" and BullMQ a stack trace for
 * each. Commands wait for the reconnect meanwhile (maxRetriesPerRequest null).
 */
export function logErrorsThrottled(
  emitter: { on(event: 'error', listener: (err: Error) => void): unknown },
  logger: Logger,
  label: string,
  everyMs = 10_000,
): void {
  let lastLogged = 0;
  emitter.on('error', (err: Error) => {
    if (Date.now() - lastLogged >= everyMs) {
      lastLogged = Date.now();
      logger.warn(`${label}: ${err.message}`);
    }
  });
}

/** {@link logErrorsThrottled} for a Redis connection. */
export function logConnectionErrors(redis: Redis, name: string): void {
  logErrorsThrottled(redis, new Logger('Redis'), name);
}

/** Key layout, in one place. */
export const RedisKeys = {
  build: (id: string) => `stratum:build:${id}`,
  buildEvents: (id: string) => `stratum:build:${id}:events`,
  /** Hash of a build's steps, field = step index: written per step, folded into the record at its end. */
  buildSteps: (id: string) => `stratum:build:${id}:steps`,
  buildCancel: (id: string) => `stratum:build:${id}:cancel`,
  /** Sorted set of every build id by creation time (ms). */
  buildIndex: 'stratum:builds',
  /** Sorted set of the ids of builds in `state`, by creation time (ms). */
  buildStateIndex: (state: string) => `stratum:builds:state:${state}`,
  /** Sorted set of the ids of finished builds by when their record expires (ms, Redis clock). */
  buildExpiryIndex: 'stratum:builds:expiry',
  /** Sorted set of the ids of a project's builds, by creation time (ms). */
  projectBuilds: (project: string) => `stratum:builds:project:${project}`,
  /** Sorted set of the ids of a project's builds of one git ref, by creation time (ms). */
  projectRefBuilds: (project: string, ref: string) => `stratum:builds:project:${project}:ref:${ref}`,
  /** Sorted set of the refs a project built, by their latest build's creation time (ms). */
  projectRefs: (project: string) => `stratum:builds:project:${project}:refs`,
  cancelChannel: 'stratum:cancel',
  /** A project's JSON (written by the API's ProjectStore; read here for its notification URL). */
  project: (name: string) => `stratum:project:${name}`,
  /**
   * Stream of what must leave the system (commit statuses, notifications), written in the same
   * MULTI as the change it tells of; the API's OutboxRelay moves it into the `outgoing` queue.
   */
  outbox: 'stratum:outbox',
  /** The id of the last outbox entry relayed (entries up to it are done). */
  outboxCursor: 'stratum:outbox:cursor',
  /** Held by the one API replica relaying the outbox. */
  outboxRelayLock: 'stratum:outbox:relay-lock',
  /** Set once an event has been appended to an endpoint's list (a relay run again skips it). */
  notifyQueued: (endpoint: string, eventId: string) => `stratum:notify:queued:${endpoint}:${eventId}`,
  /** List of events waiting for one notification endpoint, oldest first. */
  notifyOutbox: (endpoint: string) => `stratum:notify:outbox:${endpoint}`,
  /** Hash {url, project} of a notification endpoint. */
  notifyEndpoint: (endpoint: string) => `stratum:notify:endpoint:${endpoint}`,
  /** Held by the one delivery draining an endpoint's outbox. */
  notifyLock: (endpoint: string) => `stratum:notify:lock:${endpoint}`,
  /** Newest first: the last deliveries (NotificationDelivery JSON). */
  notifyHistory: 'stratum:notify:history',
  container: (id: string) => `stratum:container:${id}`,
  /** Sorted set of live container ids by creation time. */
  containerIndex: 'stratum:container:_index',
} as const;

/** BullMQ key prefix (its default, named so operators can find it). */
export const QUEUE_PREFIX = 'bull';
