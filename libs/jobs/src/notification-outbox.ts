import { createHash } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BuildState } from '@stratum/contracts';
import type { BuildOutboxEntry } from './outbox';
import { OutgoingProducer } from './producers';
import { RedisKeys } from './redis';

/** Events kept per endpoint while it is unreachable; past it the oldest are dropped (and said so). */
export const MAX_OUTBOX_EVENTS = 10_000;

/** A notification waiting in an endpoint's outbox. */
export interface OutboxEvent {
  readonly id: string;
  readonly type: string;
  /** The JSON body sent, as sent (its HMAC is computed over these bytes). */
  readonly body: string;
  /** Default application/json; Distribution's envelope has its own. */
  readonly contentType?: string;
}

/** A receiver of notifications: the service's (`NOTIFY_URLS`) or a project's (`notifyUrl`). */
export interface NotificationEndpoint {
  readonly url: string;
  /** Null: a service endpoint (signed with NOTIFY_SECRET); else the project whose secret signs. */
  readonly project: string | null;
}

/** Stable id of an endpoint (its outbox, lock and jobs are named by it). */
export function endpointId(e: NotificationEndpoint): string {
  return createHash('sha256')
    .update(`${e.project ?? ''}\n${e.url}`)
    .digest('hex')
    .slice(0, 24);
}

/** How long an endpoint remembers an event was appended (a relay retried within it skips it). */
const QUEUED_MARK_SECONDS = 7 * 24 * 3600;

/**
 * Appends an event to an endpoint's list once: KEYS outbox, endpoint hash, queued mark; ARGV
 * event JSON, url, project, mark TTL, max length. Answers the list's length, or -1 when the
 * event was appended before (the mark is set).
 */
const APPEND_ONCE = `
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[4])) == false then return -1 end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'url', ARGV[2], 'project', ARGV[3])
if n > tonumber(ARGV[5]) then redis.call('LTRIM', KEYS[1], n - tonumber(ARGV[5]), -1) end
return n`;

/**
 * Outgoing notifications: the API's OutboxRelay hands each outbox entry (written with the
 * change it tells of, see outbox.ts) here, which appends it to one list per endpoint (so events
 * of a build leave in the order they happened) and queues that endpoint's delivery on the
 * `outgoing` queue; the API's processor drains each list in order with retries. Appending is
 * idempotent per (endpoint, event) and the job id is fixed, so a relay that crashed midway and
 * runs the entry again adds nothing twice. Throws when Redis refuses (the relay retries).
 */
export class NotificationOutbox {
  private readonly logger = new Logger('NotificationOutbox');

  constructor(
    private readonly redis: Redis,
    private readonly producer: OutgoingProducer,
    /** NOTIFY_URLS: endpoints of every event. */
    private readonly serviceUrls: readonly string[],
  ) {}

  /** Build queued/started/succeeded/failed/cancelled: to the service's and the project's endpoints. */
  async buildChanged(entry: BuildOutboxEntry): Promise<void> {
    const { record, id, at } = entry;
    const type = `build.${BUILD_EVENT[record.state]}`;
    const body = JSON.stringify({
      id,
      type,
      at,
      build: {
        id: record.id,
        state: record.state,
        tags: record.tags,
        imageDigest: record.imageDigest,
        error: record.error,
        source: record.source ?? null,
        attempts: record.attempts,
      },
    });
    await this.publish({ id, type, body }, record.source?.project ?? null);
  }

  /** Appends the event to each endpoint's list (once) and queues its delivery. */
  async publish(event: OutboxEvent, project: string | null): Promise<void> {
    const endpoints: NotificationEndpoint[] = this.serviceUrls.map((url) => ({ url, project: null }));
    if (project !== null) {
      const raw = await this.redis.get(RedisKeys.project(project));
      const url =
        raw === null ? null : ((JSON.parse(raw) as { notifyUrl?: string | null }).notifyUrl ?? null);
      if (url !== null) {
        endpoints.push({ url, project });
      }
    }
    for (const e of endpoints) {
      const id = endpointId(e);
      const length = (await this.redis.eval(
        APPEND_ONCE,
        3,
        RedisKeys.notifyOutbox(id),
        RedisKeys.notifyEndpoint(id),
        RedisKeys.notifyQueued(id, event.id),
        JSON.stringify(event),
        e.url,
        e.project ?? '',
        QUEUED_MARK_SECONDS,
        MAX_OUTBOX_EVENTS,
      )) as number;
      if (length > MAX_OUTBOX_EVENTS) {
        this.logger.warn(`notifications to ${e.url}: outbox full, the oldest events were dropped`);
      }
      await this.producer.notify(id, event.id);
    }
  }
}

const BUILD_EVENT: Readonly<Record<BuildState, string>> = {
  queued: 'queued',
  running: 'started',
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'cancelled',
};
