import type { Redis } from 'ioredis';
import { BlobDigest, BlobStore } from './blob-store';
import { ForwardingRepositoryStore, RepositoryStore } from './repository-store';
import { StorageError } from './storage-error';

/** A repository pattern (`*` matches any run of characters) and the bytes its repositories may hold. */
export interface RepositoryQuotaRule {
  readonly pattern: string;
  readonly limitBytes: number;
}

/** A blob a write would link into a repository; `size` unknown: read from the blob store. */
export interface QuotaBlob {
  readonly digest: BlobDigest;
  readonly size?: number;
}

/** One pattern's usage: bytes of the unique blobs linked to the repositories it matches. */
export interface QuotaUsage {
  readonly pattern: string;
  readonly usedBytes: number;
  readonly limitBytes: number;
}

/** What {@link QuotaExceededError} says, also sent as the error's detail. */
export interface QuotaRefusal {
  readonly repository: string;
  readonly pattern: string;
  readonly usedBytes: number;
  readonly limitBytes: number;
  /** Bytes of blobs new to the pattern that the refused write would have added. */
  readonly addBytes: number;
}

function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} B` : `${v.toFixed(1)} ${units[u]} (${bytes} bytes)`;
}

/** StorageError QUOTA_EXCEEDED: the write would take a pattern's repositories past REPOSITORY_QUOTAS. */
export class QuotaExceededError extends StorageError {
  readonly detail: Record<string, unknown>;
  constructor(readonly refusal: QuotaRefusal) {
    super(
      'QUOTA_EXCEEDED',
      `quota exceeded for repository ${refusal.repository}: REPOSITORY_QUOTAS ${refusal.pattern} allows ` +
        `${human(refusal.limitBytes)}, ${human(refusal.usedBytes)} used, this write adds ${human(refusal.addBytes)}`,
    );
    this.detail = { ...refusal };
  }
}

// All keys share one hash tag, so the scripts' keys sit in one slot on a Redis Cluster too.
const PREFIX = 'stratum:{quota}';
/** Keys of the quota ledger, in one place. */
export const QuotaKeys = {
  /** Hash digest → size: the blobs counted for a repository (only repositories some pattern matches). */
  repository: (repository: string) => `${PREFIX}:repo:${repository}`,
  /** Hash digest → how many of the pattern's repositories hold it. */
  refs: (pattern: string) => `${PREFIX}:pattern:${pattern}:refs`,
  /** Integer: bytes of the pattern's unique blobs. */
  used: (pattern: string) => `${PREFIX}:pattern:${pattern}:used`,
  /** JSON of the patterns the ledger was last recomputed for. */
  rules: `${PREFIX}:rules`,
} as const;

// KEYS: repo hash, then (refs, used) per pattern. ARGV: pattern count, limits, then digest/size pairs.
// Checks every pattern first and records nothing on a refusal: {pattern index, used, add}; else {0}.
const ADMIT = `
local np = tonumber(ARGV[1])
local fresh, seen = {}, {}
for i = np + 2, #ARGV, 2 do
  local d = ARGV[i]
  if not seen[d] and redis.call('HEXISTS', KEYS[1], d) == 0 then
    seen[d] = true
    fresh[#fresh + 1] = i
  end
end
for p = 1, np do
  local add = 0
  for _, i in ipairs(fresh) do
    if redis.call('HEXISTS', KEYS[2 * p], ARGV[i]) == 0 then add = add + tonumber(ARGV[i + 1]) end
  end
  local used = tonumber(redis.call('GET', KEYS[2 * p + 1]) or '0')
  if add > 0 and used + add > tonumber(ARGV[1 + p]) then return {p, used, add} end
end
for _, i in ipairs(fresh) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  for p = 1, np do
    if redis.call('HINCRBY', KEYS[2 * p], ARGV[i], 1) == 1 then redis.call('INCRBY', KEYS[2 * p + 1], ARGV[i + 1]) end
  end
end
return {0}
`;

// KEYS as ADMIT. ARGV: pattern count, then digests.
const RELEASE = `
local np = tonumber(ARGV[1])
for i = 2, #ARGV do
  local size = redis.call('HGET', KEYS[1], ARGV[i])
  if size then
    redis.call('HDEL', KEYS[1], ARGV[i])
    for p = 1, np do
      if redis.call('HINCRBY', KEYS[2 * p], ARGV[i], -1) <= 0 then
        redis.call('HDEL', KEYS[2 * p], ARGV[i])
        redis.call('DECRBY', KEYS[2 * p + 1], size)
      end
    end
  end
end
return 0
`;

/**
 * Per-pattern byte counters of REPOSITORY_QUOTAS in Redis, so a write's check is one script call
 * however big the repositories are: for each repository some pattern matches, the blobs counted
 * for it (digest → size); for each pattern, how many of its repositories hold each blob and the
 * bytes of those held at least once. {@link admit} checks and records a whole write at once
 * (atomically, in a Lua script): either every blob is recorded or, past a limit, none is.
 * {@link recompute} replaces the counters from what the store holds (maintenance runs it).
 */
export class RedisQuotaLedger {
  private readonly rules: { rule: RepositoryQuotaRule; re: RegExp }[];

  constructor(
    private readonly redis: Redis,
    rules: readonly RepositoryQuotaRule[],
  ) {
    this.rules = rules.map((rule) => ({ rule, re: glob(rule.pattern) }));
  }

  /** The quota rules whose pattern matches `repository`. */
  matching(repository: string): RepositoryQuotaRule[] {
    return this.rules.filter((r) => r.re.test(repository)).map((r) => r.rule);
  }

  /**
   * Records that `repository` holds `blobs` (sizes known), unless that takes a matching pattern
   * past its limit: then records nothing and returns the refusal. Returns the digests newly
   * recorded for the repository (to {@link release} if the write then fails).
   */
  async admit(
    repository: string,
    blobs: readonly { digest: BlobDigest; size: number }[],
  ): Promise<{ refusal: QuotaRefusal | null }> {
    const rules = this.matching(repository);
    if (rules.length === 0 || blobs.length === 0) {
      return { refusal: null };
    }
    const keys = [
      QuotaKeys.repository(repository),
      ...rules.flatMap((r) => [QuotaKeys.refs(r.pattern), QuotaKeys.used(r.pattern)]),
    ];
    const args = [
      String(rules.length),
      ...rules.map((r) => String(r.limitBytes)),
      ...blobs.flatMap((b) => [b.digest, String(b.size)]),
    ];
    const out = (await this.redis.eval(ADMIT, keys.length, ...keys, ...args)) as number[];
    if (out[0] === 0) {
      return { refusal: null };
    }
    const rule = rules[out[0] - 1];
    return {
      refusal: {
        repository,
        pattern: rule.pattern,
        usedBytes: Number(out[1]),
        limitBytes: rule.limitBytes,
        addBytes: Number(out[2]),
      },
    };
  }

  /** Forgets that `repository` holds `digests` (those recorded); a pattern's bytes drop when none of its repositories holds one. */
  async release(repository: string, digests: readonly BlobDigest[]): Promise<void> {
    const rules = this.matching(repository);
    if (rules.length === 0 || digests.length === 0) {
      return;
    }
    const keys = [
      QuotaKeys.repository(repository),
      ...rules.flatMap((r) => [QuotaKeys.refs(r.pattern), QuotaKeys.used(r.pattern)]),
    ];
    await this.redis.eval(RELEASE, keys.length, ...keys, String(rules.length), ...digests);
  }

  /** Whether the blob is recorded for the repository. */
  async holds(repository: string, digest: BlobDigest): Promise<boolean> {
    return (await this.redis.hexists(QuotaKeys.repository(repository), digest)) === 1;
  }

  /** The blobs counted for `repository`, with their sizes. */
  async counted(repository: string): Promise<Map<string, number>> {
    const all = await this.redis.hgetall(QuotaKeys.repository(repository));
    return new Map(Object.entries(all).map(([d, s]) => [d, Number(s)]));
  }

  /** Usage of every pattern. */
  async usage(): Promise<QuotaUsage[]> {
    const used =
      this.rules.length === 0
        ? []
        : await this.redis.mget(this.rules.map((r) => QuotaKeys.used(r.rule.pattern)));
    return this.rules.map((r, i) => ({
      pattern: r.rule.pattern,
      usedBytes: Number(used[i] ?? 0),
      limitBytes: r.rule.limitBytes,
    }));
  }

  /** True when the counters were last recomputed for other patterns (or never). */
  async stale(): Promise<boolean> {
    return (await this.redis.get(QuotaKeys.rules)) !== this.rulesJson();
  }

  /**
   * Replaces every counter with `held` (repository → its blobs and their sizes, for every
   * repository the store holds). A write admitted while the caller gathered `held` and not in
   * it is forgotten until the next recompute (counted low, never refused wrongly).
   */
  async recompute(held: ReadonlyMap<string, ReadonlyMap<string, number>>): Promise<void> {
    const old: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000);
      cursor = next;
      old.push(...keys);
    } while (cursor !== '0');
    const tx = this.redis.multi();
    if (old.length > 0) {
      tx.del(...old);
    }
    // Per pattern: how many of its repositories hold each blob, and each blob's size.
    const perPattern = new Map(
      this.rules.map((r) => [
        r.rule.pattern,
        { counts: new Map<string, number>(), sizes: new Map<string, number>() },
      ]),
    );
    for (const [repository, blobs] of held) {
      const rules = this.matching(repository);
      if (rules.length === 0 || blobs.size === 0) {
        continue;
      }
      tx.hset(QuotaKeys.repository(repository), Object.fromEntries(blobs));
      for (const r of rules) {
        const p = perPattern.get(r.pattern);
        for (const [d, size] of blobs) {
          p?.counts.set(d, (p.counts.get(d) ?? 0) + 1);
          p?.sizes.set(d, size);
        }
      }
    }
    for (const [pattern, { counts, sizes }] of perPattern) {
      if (counts.size > 0) {
        tx.hset(QuotaKeys.refs(pattern), Object.fromEntries(counts));
      }
      tx.set(QuotaKeys.used(pattern), String([...sizes.values()].reduce((a, b) => a + b, 0)));
    }
    tx.set(QuotaKeys.rules, this.rulesJson());
    await tx.exec();
  }

  private rulesJson(): string {
    return JSON.stringify(this.rules.map((r) => r.rule.pattern).sort());
  }
}

/**
 * A {@link RepositoryStore} that keeps REPOSITORY_QUOTAS: each blob or manifest link into a
 * repository a quota pattern matches is admitted by the {@link RedisQuotaLedger} first, and a
 * link past a limit throws {@link QuotaExceededError} without linking. Writes of many blobs
 * (a build's image, an import, a tag copy) call {@link reserve} first, so that they are refused
 * as a whole before anything is linked. Unlinks release the blob's bytes.
 */
export class QuotaRepositoryStore extends ForwardingRepositoryStore {
  constructor(
    inner: RepositoryStore,
    private readonly blobs: BlobStore,
    readonly ledger: RedisQuotaLedger,
  ) {
    super(inner);
  }

  /**
   * Admits every blob of a write into `repository` at once (QuotaExceededError past a limit,
   * nothing recorded). Returns the digests newly recorded, for {@link withQuota} to release when
   * the write fails before linking them.
   */
  async reserve(repository: string, blobs: readonly QuotaBlob[]): Promise<BlobDigest[]> {
    if (this.ledger.matching(repository).length === 0) {
      return [];
    }
    const sized: { digest: BlobDigest; size: number }[] = [];
    const fresh: BlobDigest[] = [];
    for (const b of new Map(blobs.map((x) => [x.digest, x])).values()) {
      if (await this.ledger.holds(repository, b.digest)) {
        continue;
      }
      let size = b.size;
      if (size === undefined) {
        const s = await this.blobs.stat(b.digest);
        if (!s.exists) {
          continue; // the link itself reports BLOB_UNKNOWN
        }
        size = s.size;
      }
      sized.push({ digest: b.digest, size });
      fresh.push(b.digest);
    }
    const { refusal } = await this.ledger.admit(repository, sized);
    if (refusal !== null) {
      throw new QuotaExceededError(refusal);
    }
    return fresh;
  }

  /** Gives back what {@link reserve} recorded and the store does not link (a write that failed). */
  async unreserve(repository: string, digests: readonly BlobDigest[]): Promise<void> {
    const unlinked: BlobDigest[] = [];
    for (const d of digests) {
      if (!(await this.inner.hasBlob(repository, d)) && !(await this.inner.hasManifest(repository, d))) {
        unlinked.push(d);
      }
    }
    await this.ledger.release(repository, unlinked);
  }

  override async linkBlob(repository: string, digest: BlobDigest): Promise<void> {
    await this.reserve(repository, [{ digest }]);
    return this.inner.linkBlob(repository, digest);
  }
  override async linkManifest(repository: string, digest: BlobDigest): Promise<void> {
    await this.reserve(repository, [{ digest }]);
    return this.inner.linkManifest(repository, digest);
  }
  override async unlinkBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    const removed = await this.inner.unlinkBlob(repository, digest);
    if (removed && !(await this.inner.hasManifest(repository, digest))) {
      await this.ledger.release(repository, [digest]);
    }
    return removed;
  }
  override async unlinkManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    const removed = await this.inner.unlinkManifest(repository, digest);
    if (removed && !(await this.inner.hasBlob(repository, digest))) {
      await this.ledger.release(repository, [digest]);
    }
    return removed;
  }
}

/**
 * Runs a write of many blobs into `repository` under REPOSITORY_QUOTAS: all of `blobs` are
 * admitted first (QuotaExceededError before anything is written when they do not fit), and
 * given back if `write` fails before linking them. A store without quotas just runs `write`.
 */
export async function withQuota<T>(
  store: RepositoryStore,
  repository: string,
  blobs: readonly QuotaBlob[],
  write: () => Promise<T>,
): Promise<T> {
  if (!(store instanceof QuotaRepositoryStore)) {
    return write();
  }
  const fresh = await store.reserve(repository, blobs);
  try {
    return await write();
  } catch (err) {
    await store.unreserve(repository, fresh).catch(() => undefined);
    throw err;
  }
}
