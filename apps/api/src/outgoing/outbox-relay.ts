import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  NotificationOutbox,
  OutboxEntry,
  OutgoingProducer,
  parseOutboxEntry,
  REDIS,
  RedisKeys,
} from '@stratum/jobs';
import { readLimited, storedMediaType } from '@stratum/registry';
import { BLOB_STORE, BlobDigest, BlobStore } from '@stratum/storage';
import { ENVELOPE_MEDIA_TYPE, registryEnvelope } from '../registry/registry-notifications';

/** How long the relay lock lasts without renewal (a dead relay's replica is replaced after it). */
const LOCK_MS = 10_000;
/** A manifest larger than this is not read to describe it (the registry's own limit is 4 MiB). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Entries read at once. */
const BATCH = 100;
/** How long one blocking read waits for new entries (and a replica without the lock waits). */
const BLOCK_MS = 1000;

/**
 * Marks `entry` relayed (the cursor moves past it and it leaves the stream) only while the lock
 * is still ours: KEYS lock, cursor, stream; ARGV owner, entry id, lock ms. 1 done, 0 lock lost.
 */
const ADVANCE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1`;

const RELEASE =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Moves the outbox stream (what must leave the system, written in the same MULTI as the build
 * record change or registry event it tells of, see @stratum/jobs outbox.ts) into the `outgoing`
 * queue: a commit status job and a notification per endpoint. One API replica relays at a time
 * (a Redis lock, renewed per entry), in stream order, so a build's events keep their order. An
 * entry leaves the stream only after its jobs were added; a relay that dies midway leaves it for
 * the next holder of the lock, which adds it again without duplicates (fixed job ids, and each
 * endpoint's list takes an event once).
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('OutboxRelay');
  private readonly owner = randomUUID();
  private reader: Redis | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly outgoing: OutgoingProducer,
    private readonly notifications: NotificationOutbox,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  onApplicationBootstrap(): void {
    // Blocking reads hold their connection: one of its own.
    this.reader = this.redis.duplicate();
    this.reader.on('error', () => undefined);
    this.loop = this.run();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.reader?.disconnect();
    await this.loop;
    await this.redis.eval(RELEASE, 1, RedisKeys.outboxRelayLock, this.owner).catch(() => undefined);
  }

  private async run(): Promise<void> {
    let lastError = 0;
    while (!this.stopped) {
      try {
        if (!(await this.holdLock())) {
          await sleep(BLOCK_MS);
          continue;
        }
        await this.relayBatch();
      } catch (err) {
        if (this.stopped) {
          return;
        }
        if (Date.now() - lastError > 10_000) {
          lastError = Date.now();
          this.logger.warn(
            `outbox not relayed, trying again: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        await sleep(BLOCK_MS);
      }
    }
  }

  /** Takes the lock, or keeps it when ours. */
  private async holdLock(): Promise<boolean> {
    const key = RedisKeys.outboxRelayLock;
    if ((await this.redis.set(key, this.owner, 'PX', LOCK_MS, 'NX')) === 'OK') {
      return true;
    }
    if ((await this.redis.get(key)) === this.owner) {
      await this.redis.pexpire(key, LOCK_MS);
      return true;
    }
    return false;
  }

  private async relayBatch(): Promise<void> {
    const cursor = (await this.redis.get(RedisKeys.outboxCursor)) ?? '0';
    const reader = this.reader;
    if (reader === null) {
      return;
    }
    const answer = await reader.xread('COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', RedisKeys.outbox, cursor);
    const entries = answer?.[0]?.[1] ?? [];
    this.crashIfAsked(entries.map(([, fields]) => parseOutboxEntry(fields)));
    for (const [streamId, fields] of entries) {
      const entry = parseOutboxEntry(fields);
      if (entry === null) {
        this.logger.warn(`outbox entry ${streamId} is unreadable; skipped`);
      } else {
        await this.relay(entry);
      }
      const still = await this.redis.eval(
        ADVANCE,
        3,
        RedisKeys.outboxRelayLock,
        RedisKeys.outboxCursor,
        RedisKeys.outbox,
        this.owner,
        streamId,
        LOCK_MS,
      );
      if (still !== 1) {
        return; // another replica holds the lock now and goes on from the cursor
      }
    }
  }

  /** A manifest's media type and size, or null when its bytes are gone or unreadable. */
  private async describe(digest: string): Promise<{ mediaType: string; size: number } | null> {
    try {
      const bytes = await readLimited(
        await this.blobs.get(digest as BlobDigest),
        MAX_MANIFEST_BYTES,
        'MANIFEST_INVALID',
      );
      return { mediaType: storedMediaType(bytes), size: bytes.length };
    } catch {
      return null;
    }
  }

  /** Chaos tests (TEST_CRASH_POINT=outbox-relay-claimed:<state>): die holding entries read, none queued. */
  private crashIfAsked(entries: readonly (OutboxEntry | null)[]): void {
    const point = this.config.testCrashPoint;
    if (point?.startsWith('outbox-relay-claimed:') !== true) {
      return;
    }
    const state = point.slice('outbox-relay-claimed:'.length);
    if (entries.some((e) => e?.kind === 'build' && e.record.state === state)) {
      process.kill(process.pid, 'SIGKILL');
    }
  }

  private async relay(entry: OutboxEntry): Promise<void> {
    switch (entry.kind) {
      case 'build':
        await this.outgoing.buildChanged(entry.record);
        await this.notifications.buildChanged(entry);
        return;
      case 'registry': {
        const manifest = await this.describe(entry.digest);
        await this.notifications.publish(
          {
            id: entry.id,
            type: `registry.${entry.action}`,
            body: registryEnvelope(entry, manifest, this.config),
            contentType: ENVELOPE_MEDIA_TYPE,
          },
          null,
        );
        return;
      }
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
