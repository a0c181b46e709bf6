import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { ChainableCommander, Redis } from 'ioredis';
import type { RepositoryEvent, RepositoryEventSink } from '@stratum/storage';
import { BuildRecord } from '@stratum/contracts';
import { RedisKeys } from './redis';

/**
 * Entries the outbox stream keeps while no API relays it (every API replica down); past it
 * Redis drops the oldest (XADD MAXLEN ~). Far above what a day of builds writes.
 */
export const MAX_OUTBOX_STREAM = 100_000;

/** A build record as it was written (a new build or a state change). */
export interface BuildOutboxEntry {
  readonly kind: 'build';
  /** The event's id (the notification's `id` and X-Stratum-Delivery): fixed when written. */
  readonly id: string;
  readonly at: string;
  readonly record: BuildRecord;
}

/**
 * A tag set or deleted, or a manifest unlinked, wherever it happened (a /v2 PUT, a build's own
 * tags, a push or commit job, an import, retention): the API's relay describes the manifest and
 * sends Distribution's envelope to the service's receivers.
 */
export interface RegistryOutboxEntry {
  readonly kind: 'registry';
  readonly id: string;
  readonly at: string;
  readonly action: 'push' | 'delete';
  readonly repository: string;
  readonly tag: string | null;
  readonly digest: string;
  /** The process that wrote it (the envelope's source.instanceID). */
  readonly instance: string;
}

export type OutboxEntry = BuildOutboxEntry | RegistryOutboxEntry;

/**
 * Adds `entry` to the outbox stream inside `tx`, the MULTI that writes the change it tells of:
 * the change and what must go out about it are written together or not at all (a process that
 * dies after EXEC has nothing left to enqueue; the API's relay does it).
 */
export function addToOutbox(tx: ChainableCommander, entry: OutboxEntry): void {
  tx.xadd(RedisKeys.outbox, 'MAXLEN', '~', MAX_OUTBOX_STREAM, '*', 'entry', JSON.stringify(entry));
}

/** The outbox entry of a build record just written. */
export function buildOutboxEntry(record: BuildRecord): BuildOutboxEntry {
  return { kind: 'build', id: randomUUID(), at: new Date().toISOString(), record };
}

/**
 * Writes each repository change into the outbox (one XADD: the store's write is a file or an
 * object, not in Redis, so it is written just after); the API's relay sends it to its receivers
 * (NOTIFY_URLS), if any. A Redis error is logged, never thrown: the tag stands.
 */
export class RepositoryOutboxSink implements RepositoryEventSink {
  private readonly logger = new Logger('RepositoryEvents');

  constructor(
    private readonly redis: Redis,
    private readonly instance: string,
  ) {}

  async repositoryChanged(e: RepositoryEvent): Promise<void> {
    const tx = this.redis.multi();
    addToOutbox(tx, {
      kind: 'registry',
      id: randomUUID(),
      at: new Date().toISOString(),
      ...e,
      instance: this.instance,
    });
    await tx.exec().catch((err: unknown) => {
      this.logger.warn(
        `registry.${e.action} of ${e.repository}${e.tag !== null ? `:${e.tag}` : ''} not queued: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
  }
}

/** An entry read back from the stream's fields (`['entry', json]`), or null when unreadable. */
export function parseOutboxEntry(fields: readonly string[]): OutboxEntry | null {
  const i = fields.indexOf('entry');
  if (i < 0 || i + 1 >= fields.length) {
    return null;
  }
  try {
    const e = JSON.parse(fields[i + 1]) as OutboxEntry;
    return e.kind === 'build' || e.kind === 'registry' ? e : null;
  } catch {
    return null;
  }
}
