import type { Redis } from 'ioredis';
import { BlobDigest } from './blob-store';
import { ForwardingRepositoryStore, RepositoryStore } from './repository-store';
import { StorageError } from './storage-error';

/** A repository pattern and a tag pattern (`*` matches any run of characters): IMMUTABLE_TAGS. */
export interface ImmutableTagRule {
  readonly repository: string;
  readonly tag: string;
}

/**
 * Who first set an immutable tag that the store may not show yet: the check and the write on
 * the fs and S3 stores are two steps, so without this two first writers could both pass the
 * check. {@link claim} is a SET NX in Redis: the first digest wins, the others are refused.
 */
export interface TagClaims {
  /** Claims `repository:tag` for `digest`; returns the digest holding the claim (ours or the winner's). */
  claim(repository: string, tag: string, digest: BlobDigest): Promise<string>;
  /** Drops our claim when our write failed (only if it is still ours). */
  release(repository: string, tag: string, digest: BlobDigest): Promise<void>;
}

// The claim only has to outlive the write it guards: afterwards the store's tag refuses others,
// and a writer that died mid-write does not hold the tag for longer than this.
const CLAIM_MS = 60_000;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** {@link TagClaims} in Redis (`stratum:immutable-claim:<repository>:<tag>`, expiring after a minute). */
export class RedisTagClaims implements TagClaims {
  constructor(private readonly redis: Redis) {}

  private key(repository: string, tag: string): string {
    return `stratum:immutable-claim:${repository}:${tag}`;
  }

  async claim(repository: string, tag: string, digest: BlobDigest): Promise<string> {
    const key = this.key(repository, tag);
    const set = await this.redis.set(key, digest, 'PX', CLAIM_MS, 'NX');
    return set === 'OK' ? digest : ((await this.redis.get(key)) ?? digest);
  }

  async release(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.key(repository, tag), digest);
  }
}

function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/**
 * A {@link RepositoryStore} whose matching tags, once set, never move to another digest and are
 * never deleted: StorageError TAG_IMMUTABLE instead (setting the digest it already names is
 * fine). Every write path goes through the store — /v2 manifest PUT and DELETE, build and commit
 * pushes, the tag and delete APIs, pull-through mirrors — so each is covered by this one check.
 * The check and the write are two steps on the fs and S3 stores; with {@link TagClaims} (Redis)
 * two writers racing on a new immutable tag cannot both win: the first claim does, the other is
 * refused. Without claims (a store used outside the services) the second writer's digest stays.
 */
export class ImmutableTagsRepositoryStore extends ForwardingRepositoryStore {
  private readonly rules: { repository: RegExp; tag: RegExp }[];

  constructor(
    inner: RepositoryStore,
    rules: readonly ImmutableTagRule[],
    private readonly claims: TagClaims | null = null,
  ) {
    super(inner);
    this.rules = rules.map((r) => ({ repository: glob(r.repository), tag: glob(r.tag) }));
  }

  /** Whether `repository:tag` may not move or go away once set. */
  override isImmutable(repository: string, tag: string): boolean {
    return this.rules.some((r) => r.repository.test(repository) && r.tag.test(tag));
  }

  /** Throws TAG_IMMUTABLE when `repository:tag` is immutable and names (or is being set to) another digest. */
  override async assertTagSettable(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    if (!this.isImmutable(repository, tag)) {
      return;
    }
    const current = await this.inner.getTag(repository, tag);
    if (current !== null && current !== digest) {
      throw immutable(repository, tag, current, digest);
    }
  }

  override async setTag(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    if (!this.isImmutable(repository, tag)) {
      return this.inner.setTag(repository, tag, digest);
    }
    await this.assertTagSettable(repository, tag, digest);
    if (this.claims === null) {
      return this.inner.setTag(repository, tag, digest);
    }
    const winner = await this.claims.claim(repository, tag, digest);
    if (winner !== digest) {
      throw immutable(repository, tag, winner, digest);
    }
    try {
      // A writer whose claim has lapsed may have written meanwhile.
      await this.assertTagSettable(repository, tag, digest);
      await this.inner.setTag(repository, tag, digest);
    } catch (err) {
      await this.claims.release(repository, tag, digest).catch(() => undefined);
      throw err;
    }
  }

  override async deleteTag(repository: string, tag: string): Promise<boolean> {
    if (this.isImmutable(repository, tag) && (await this.inner.getTag(repository, tag)) !== null) {
      throw new StorageError(
        'TAG_IMMUTABLE',
        `tag ${repository}:${tag} is immutable (IMMUTABLE_TAGS): it cannot be deleted`,
      );
    }
    return this.inner.deleteTag(repository, tag);
  }
}

function immutable(repository: string, tag: string, current: string, digest: string): StorageError {
  return new StorageError(
    'TAG_IMMUTABLE',
    `tag ${repository}:${tag} is immutable (IMMUTABLE_TAGS): it names ${current}, not ${digest}`,
  );
}
