import { createHash, randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BuildRecord, BuildState } from '@stratum/contracts';
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

/**
 * Outgoing notifications, written where the change happens (API or worker) into one outbox per
 * endpoint (a Redis list, so events of a build leave in the order they happened) and handed to
 * the `outgoing` queue; the API's processor drains each outbox in order with retries. A build
 * or a push only pays an RPUSH and a job add per endpoint, whatever the receivers do.
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
  async buildChanged(record: BuildRecord): Promise<void> {
    const type = `build.${BUILD_EVENT[record.state]}`;
    const id = randomUUID();
    const body = JSON.stringify({
      id,
      type,
      at: new Date().toISOString(),
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

  /** Appends the event to each endpoint's outbox and queues its delivery. Never throws. */
  async publish(event: OutboxEvent, project: string | null): Promise<void> {
    try {
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
        const [[, length]] = (await this.redis
          .multi()
          .rpush(RedisKeys.notifyOutbox(id), JSON.stringify(event))
          .hset(RedisKeys.notifyEndpoint(id), { url: e.url, project: e.project ?? '' })
          .exec()) as [[Error | null, number]];
        if (length > MAX_OUTBOX_EVENTS) {
          await this.redis.ltrim(RedisKeys.notifyOutbox(id), length - MAX_OUTBOX_EVENTS, -1);
          this.logger.warn(`notifications to ${e.url}: outbox full, the oldest events were dropped`);
        }
        await this.producer.notify(id, event.id);
      }
    } catch (err) {
      this.logger.warn(
        `${event.type} ${event.id} not queued: ${err instanceof Error ? err.message : String(err)}`,
      );
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
