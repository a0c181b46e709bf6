import { createHmac, randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { NotificationDelivery, NotifyJobData, NotifyJobResult } from '@stratum/contracts';
import { OutboxEvent, REDIS, RedisKeys, SecretBox } from '@stratum/jobs';
import { FORGE_TOKEN_PURPOSE, ProjectStore } from '../projects/project-store';

/** Deliveries kept in the history (newest first). */
export const MAX_DELIVERY_HISTORY = 1000;
/** How long one delivery run may hold an endpoint (renewed per event). */
const LOCK_MS = 60_000;

/** `sha256=<hex HMAC-SHA256 of the body>`, as GitHub signs its webhooks: receivers verify it the same way. */
export function notificationSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Drains one endpoint's outbox, oldest first: POSTs each event's JSON with
 * `X-Stratum-Signature: sha256=<HMAC>` (the service's NOTIFY_SECRET, or the project's
 * notifySecret), `X-Stratum-Event` and `X-Stratum-Delivery`; an event leaves the outbox only once
 * the receiver answered 2xx, so a receiver that is down gets everything, in order, when it is
 * back (a failure throws and BullMQ retries with backoff). One run per endpoint at a time (a
 * Redis lock); another run meanwhile fails its attempt and retries, finding what is left.
 */
@Injectable()
export class NotificationDeliveryService {
  private readonly secrets: SecretBox;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly projects: ProjectStore,
  ) {
    this.secrets = new SecretBox(config.auth.secret, FORGE_TOKEN_PURPOSE);
  }

  async deliver(data: NotifyJobData): Promise<NotifyJobResult> {
    const endpoint = await this.redis.hgetall(RedisKeys.notifyEndpoint(data.endpoint));
    if (endpoint.url === undefined) {
      return { endpoint: data.endpoint, delivered: 0 };
    }
    const project = endpoint.project === '' || endpoint.project === undefined ? null : endpoint.project;
    const lock = RedisKeys.notifyLock(data.endpoint);
    const owner = randomUUID();
    if ((await this.redis.set(lock, owner, 'PX', LOCK_MS, 'NX')) !== 'OK') {
      throw new Error(`notifications to ${endpoint.url}: another delivery is under way; trying again`);
    }
    let delivered = 0;
    try {
      const secret = await this.secretOf(project);
      for (;;) {
        const raw = await this.redis.lindex(RedisKeys.notifyOutbox(data.endpoint), 0);
        if (raw === null) {
          return { endpoint: data.endpoint, delivered };
        }
        await this.redis.pexpire(lock, LOCK_MS);
        const event = JSON.parse(raw) as OutboxEvent;
        await this.post(endpoint.url, project, event, secret);
        // Only the event sent leaves (LREM of that exact entry: nothing else moves it).
        await this.redis.lrem(RedisKeys.notifyOutbox(data.endpoint), 1, raw);
        delivered++;
      }
    } finally {
      // Released only if still ours (a run that outlived its lock does not free another's).
      await this.redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        1,
        lock,
        owner,
      );
    }
  }

  private async secretOf(project: string | null): Promise<string> {
    if (project === null) {
      if (this.config.git.notify.secret === null) {
        throw new UnrecoverableError(
          'NOTIFY_URLS is set without NOTIFY_SECRET: notifications cannot be signed',
        );
      }
      return this.config.git.notify.secret;
    }
    const p = await this.projects.get(project);
    const sealed = p?.notifySecret ?? null;
    const secret = sealed === null ? null : (this.secrets.open(sealed)?.toString('utf8') ?? null);
    if (secret === null) {
      throw new UnrecoverableError(`project ${project} has no notification secret that can be opened`);
    }
    return secret;
  }

  private async post(url: string, project: string | null, event: OutboxEvent, secret: string): Promise<void> {
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'Content-Type': event.contentType ?? 'application/json',
          'User-Agent': 'stratum',
          'X-Stratum-Event': event.type,
          'X-Stratum-Delivery': event.id,
          'X-Stratum-Signature': notificationSignature(secret, event.body),
        },
        body: event.body,
        redirect: 'error',
        signal: AbortSignal.timeout(this.config.git.outgoing.timeoutMs),
      });
      status = res.status;
      await res.body?.cancel().catch(() => undefined);
      if (!res.ok) {
        error = `answered ${res.status}`;
      }
    } catch (err) {
      error =
        err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    }
    const delivery: NotificationDelivery = {
      eventId: event.id,
      type: event.type,
      url,
      project,
      ok: error === null,
      status,
      error,
      at: new Date().toISOString(),
    };
    await this.redis
      .multi()
      .lpush(RedisKeys.notifyHistory, JSON.stringify(delivery))
      .ltrim(RedisKeys.notifyHistory, 0, MAX_DELIVERY_HISTORY - 1)
      .exec();
    if (error !== null) {
      throw new Error(`${event.type} ${event.id} to ${url}: ${error}`);
    }
  }

  async history(limit: number): Promise<NotificationDelivery[]> {
    const raws = await this.redis.lrange(RedisKeys.notifyHistory, 0, limit - 1);
    return raws.map((r) => JSON.parse(r) as NotificationDelivery);
  }
}
