import { randomUUID } from 'node:crypto';
import { ChainableCommander } from 'ioredis';
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

/** A registry event ready to send (Distribution's envelope), to the service's receivers. */
export interface NotificationOutboxEntry {
  readonly kind: 'notification';
  readonly id: string;
  readonly at: string;
  readonly type: string;
  readonly body: string;
  readonly contentType?: string;
  /** The project whose receiver also gets it, or null (the service's receivers only). */
  readonly project: string | null;
}

export type OutboxEntry = BuildOutboxEntry | NotificationOutboxEntry;

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

/** An entry read back from the stream's fields (`['entry', json]`), or null when unreadable. */
export function parseOutboxEntry(fields: readonly string[]): OutboxEntry | null {
  const i = fields.indexOf('entry');
  if (i < 0 || i + 1 >= fields.length) {
    return null;
  }
  try {
    const e = JSON.parse(fields[i + 1]) as OutboxEntry;
    return e.kind === 'build' || e.kind === 'notification' ? e : null;
  } catch {
    return null;
  }
}
