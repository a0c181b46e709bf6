import { ChainableCommander, Redis } from 'ioredis';
import { logConnectionErrors } from './redis';

/** Thrown by an update's change function to leave the record as it is (update answers it unchanged). */
export class KeepRecord extends Error {}

/** Where a kind of record lives in Redis. */
export interface JsonRecordsLayout<T> {
  /** What the records are, for error messages ("build", "container"). */
  readonly kind: string;
  /** Key of one record's JSON. */
  key(id: string): string;
  /** Sorted set of ids by creation time. */
  readonly index: string;
  /** Added to the transaction that creates or writes `record` (expiries, index changes). */
  onWrite?(tx: ChainableCommander, id: string, record: T): void;
}

/**
 * JSON records in Redis with an index by creation time, shared by the API and the workers.
 * Updates are read-modify-write under WATCH, retried on conflict, so two processes never lose
 * each other's writes.
 */
export class JsonRecords<T extends { readonly id: string; readonly createdAt: string }> {
  private txConn: Redis | null = null;
  private txChain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    private readonly layout: JsonRecordsLayout<T>,
  ) {}

  /** Writes a new record (with whatever `alsoInTransaction` adds to the same MULTI). */
  async create(record: T, alsoInTransaction?: (tx: ChainableCommander) => void): Promise<void> {
    const tx = this.redis
      .multi()
      .set(this.layout.key(record.id), JSON.stringify(record))
      .zadd(this.layout.index, Date.parse(record.createdAt), record.id);
    this.layout.onWrite?.(tx, record.id, record);
    alsoInTransaction?.(tx);
    await tx.exec();
  }

  async get(id: string): Promise<T | null> {
    const raw = await this.redis.get(this.layout.key(id));
    return raw === null ? null : (JSON.parse(raw) as T);
  }

  /**
   * Applies `change` atomically (with whatever `alsoInTransaction` adds to the same MULTI).
   * `change` may throw (the error propagates, nothing is written)
   * or throw {@link KeepRecord} to write nothing and answer the record as it is. Returns null
   * when the record does not exist.
   */
  update(
    id: string,
    change: (record: T) => void,
    alsoInTransaction?: (tx: ChainableCommander, record: T) => void,
  ): Promise<T | null> {
    // WATCH is per connection: updates from this process go one at a time over a dedicated
    // connection; other processes' concurrent writes make EXEC fail and we retry.
    const run = this.txChain.then(() => this.updateNow(id, change, alsoInTransaction));
    this.txChain = run.catch(() => undefined);
    return run;
  }

  private async updateNow(
    id: string,
    change: (record: T) => void,
    alsoInTransaction?: (tx: ChainableCommander, record: T) => void,
  ): Promise<T | null> {
    const key = this.layout.key(id);
    const conn = (this.txConn ??= this.duplicate());
    for (let attempt = 0; attempt < 50; attempt++) {
      await conn.watch(key);
      const raw = await conn.get(key);
      if (raw === null) {
        await conn.unwatch();
        return null;
      }
      const record = JSON.parse(raw) as T;
      try {
        change(record);
      } catch (err) {
        await conn.unwatch();
        if (err instanceof KeepRecord) {
          return JSON.parse(raw) as T;
        }
        throw err;
      }
      const tx = conn.multi().set(key, JSON.stringify(record));
      alsoInTransaction?.(tx, record);
      this.layout.onWrite?.(tx, id, record);
      if ((await tx.exec()) !== null) {
        return record;
      }
    }
    throw new Error(`${this.layout.kind} ${id}: too many concurrent updates`);
  }

  private duplicate(): Redis {
    const conn = this.redis.duplicate();
    logConnectionErrors(conn, `${this.layout.kind} records`);
    return conn;
  }

  /**
   * Calls `visit` with every indexed record, newest first, reading them in batches (only what
   * `visit` keeps stays in memory). Ids whose record has expired are dropped from the index.
   */
  async scan(visit: (record: T) => void): Promise<void> {
    const ids = await this.redis.zrevrange(this.layout.index, 0, -1);
    const stale: string[] = [];
    for (let i = 0; i < ids.length; i += 200) {
      const chunk = ids.slice(i, i + 200);
      const raws = await this.redis.mget(chunk.map((id) => this.layout.key(id)));
      raws.forEach((raw, j) => {
        if (raw === null) {
          stale.push(chunk[j]);
        } else {
          visit(JSON.parse(raw) as T);
        }
      });
    }
    if (stale.length > 0) {
      await this.redis.zrem(this.layout.index, ...stale);
    }
  }

  /**
   * Opens the connection updates use now, not at the first update: a fresh worker's first
   * build waited ~6-9 ms for it (a new client, its connect and handshake) between taking the
   * job and marking the build running.
   */
  prepare(): void {
    this.txConn ??= this.duplicate();
  }

  /** Waits for pending updates and closes the connection this helper opened itself. */
  async close(): Promise<void> {
    await this.txChain;
    this.txConn?.disconnect();
    this.txConn = null;
  }
}
