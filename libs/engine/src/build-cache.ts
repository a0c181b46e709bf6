import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { HistoryEntry } from '@stratum/oci';
import type { LayerDescriptor } from '@stratum/images';

/**
 * What a finished step left behind, enough to replay it without running anything: the layer
 * it produced (null for config-only steps and for a WORKDIR that already existed) and its
 * history entry (the `created` time is reused so a fully cached rebuild is byte-identical).
 */
export interface BuildCacheRecord {
  readonly version: 1;
  readonly layer: LayerDescriptor | null;
  readonly history: HistoryEntry;
  /** When the record was written (ISO time). */
  readonly recordedAt: string;
}

/**
 * The step cache index: step key (sha256 hex) -> record. Shared by every worker host (Redis),
 * while the layers it names live in the shared blob store.
 */
export interface BuildCacheIndex {
  get(key: string): Promise<BuildCacheRecord | null>;
  put(key: string, record: BuildCacheRecord): Promise<void>;
  /** Forgets a record whose layer is gone from the blob store. */
  delete(key: string): Promise<void>;
  /**
   * Memoized values derived from content-addressed inputs (e.g. the digest of the files a
   * COPY reads from a context blob), so a cached rebuild need not extract or hash anything.
   * Optional: without them every build computes those values again.
   */
  getMemo?(key: string): Promise<string | null>;
  putMemo?(key: string, value: string): Promise<void>;
}

/** In-process index (unit tests, single-process tools). */
export class MemoryBuildCacheIndex implements BuildCacheIndex {
  readonly records = new Map<string, BuildCacheRecord>();

  async get(key: string): Promise<BuildCacheRecord | null> {
    return this.records.get(key) ?? null;
  }

  async put(key: string, record: BuildCacheRecord): Promise<void> {
    this.records.set(key, record);
  }

  async delete(key: string): Promise<void> {
    this.records.delete(key);
  }

  readonly memos = new Map<string, string>();

  async getMemo(key: string): Promise<string | null> {
    return this.memos.get(key) ?? null;
  }

  async putMemo(key: string, value: string): Promise<void> {
    this.memos.set(key, value);
  }
}

/** Key of a cache record in Redis. */
export const cacheRecordKey = (key: string): string => `stratum:cache:${key}`;

/** Key of a memoized value in Redis. */
export const cacheMemoKey = (key: string): string => `stratum:cache-memo:${key}`;

/** Default lifetime of a record: refreshed on every hit, so a used entry never expires. */
export const DEFAULT_CACHE_TTL_SECONDS = 30 * 24 * 3600;

/** Index in Redis: `stratum:cache:<key>` -> JSON record, with a sliding TTL. */
export class RedisBuildCacheIndex implements BuildCacheIndex {
  constructor(
    private readonly redis: Redis,
    private readonly ttlSeconds = DEFAULT_CACHE_TTL_SECONDS,
  ) {}

  async get(key: string): Promise<BuildCacheRecord | null> {
    const json = await this.read(cacheRecordKey(key));
    return json === null ? null : parseRecord(json);
  }

  async put(key: string, record: BuildCacheRecord): Promise<void> {
    await this.redis.set(cacheRecordKey(key), JSON.stringify(record), 'EX', this.ttlSeconds);
  }

  async delete(key: string): Promise<void> {
    await this.redis.del(cacheRecordKey(key));
  }

  async getMemo(key: string): Promise<string | null> {
    return this.read(cacheMemoKey(key));
  }

  async putMemo(key: string, value: string): Promise<void> {
    await this.redis.set(cacheMemoKey(key), value, 'EX', this.ttlSeconds);
  }

  /**
   * Reads an entry; a hit whose expiry is more than a tenth of the TTL (at most a day) old is
   * given the full TTL again, without waiting. Renewing on every read made each cached step
   * a write, and with the shipped `appendfsync always` an fsync, on the warm build's path.
   */
  private async read(k: string): Promise<string | null> {
    const [[, value], [, ttl]] = (await this.redis.multi().get(k).ttl(k).exec()) as [
      [Error | null, string | null],
      [Error | null, number],
    ];
    const slack = Math.min(86_400, Math.ceil(this.ttlSeconds / 10));
    if (value !== null && ttl >= 0 && ttl < this.ttlSeconds - slack) {
      void this.redis.expire(k, this.ttlSeconds).catch(() => undefined);
    }
    return value;
  }
}

/** A record as read back; anything not shaped like one is a miss (e.g. an older format). */
function parseRecord(json: string): BuildCacheRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) {
    return null;
  }
  const r = v as Partial<BuildCacheRecord>;
  if (r.version !== 1 || typeof r.history !== 'object' || r.history === null) {
    return null;
  }
  const l = r.layer;
  if (
    l !== null &&
    (typeof l !== 'object' ||
      typeof l.digest !== 'string' ||
      typeof l.diffId !== 'string' ||
      typeof l.size !== 'number' ||
      typeof l.mediaType !== 'string')
  ) {
    return null;
  }
  return r as BuildCacheRecord;
}

/** JSON with object keys sorted, so equal values always hash alike. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map((v) => stableJson(v === undefined ? null : v)).join(',')}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Everything a step's result depends on (see {@link stepCacheKey}). */
export interface StepKeyInput {
  /** Key of the previous step, or the base's identity (`scratch`, `image:<manifest digest>`, a stage's final key). */
  readonly parent: string;
  /** The instruction after expansion, without its position in the file. */
  readonly instruction: unknown;
  /** For RUN: argv, environment, user, workdir, network, mounts. For COPY/ADD: workdir, owner, sources digest. */
  readonly inputs?: unknown;
}

/** Bump when the meaning of a key or of a record changes: old entries then simply miss. */
const KEY_VERSION = 'stratum-step-v1';

/** sha256 (hex) of a step's inputs; equal keys mean the step may be replayed from the cache. */
export function stepCacheKey(input: StepKeyInput): string {
  return createHash('sha256')
    .update(stableJson({ v: KEY_VERSION, p: input.parent, i: input.instruction, x: input.inputs ?? null }))
    .digest('hex');
}
