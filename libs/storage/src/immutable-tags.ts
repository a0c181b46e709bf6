import { BlobDigest } from './blob-store';
import { RepositoryStore } from './repository-store';
import { StorageError } from './storage-error';

/** A repository pattern and a tag pattern (`*` matches any run of characters): IMMUTABLE_TAGS. */
export interface ImmutableTagRule {
  readonly repository: string;
  readonly tag: string;
}

function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/**
 * A {@link RepositoryStore} whose matching tags, once set, never move to another digest and are
 * never deleted: StorageError TAG_IMMUTABLE instead (setting the digest it already names is
 * fine). Every write path goes through the store — /v2 manifest PUT and DELETE, build and commit
 * pushes, the tag and delete APIs, pull-through mirrors — so each is covered by this one check.
 * The check and the write are two steps: two writers racing on a new immutable tag can both win
 * (the second one's digest stays), as with any check-then-set on the fs and S3 stores.
 */
export class ImmutableTagsRepositoryStore implements RepositoryStore {
  private readonly rules: { repository: RegExp; tag: RegExp }[];

  constructor(
    private readonly inner: RepositoryStore,
    rules: readonly ImmutableTagRule[],
  ) {
    this.rules = rules.map((r) => ({ repository: glob(r.repository), tag: glob(r.tag) }));
  }

  /** Whether `repository:tag` may not move or go away once set. */
  isImmutable(repository: string, tag: string): boolean {
    return this.rules.some((r) => r.repository.test(repository) && r.tag.test(tag));
  }

  async setTag(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    if (this.isImmutable(repository, tag)) {
      const current = await this.inner.getTag(repository, tag);
      if (current !== null && current !== digest) {
        throw new StorageError(
          'TAG_IMMUTABLE',
          `tag ${repository}:${tag} is immutable (IMMUTABLE_TAGS): it names ${current}, not ${digest}`,
        );
      }
    }
    return this.inner.setTag(repository, tag, digest);
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    if (this.isImmutable(repository, tag) && (await this.inner.getTag(repository, tag)) !== null) {
      throw new StorageError(
        'TAG_IMMUTABLE',
        `tag ${repository}:${tag} is immutable (IMMUTABLE_TAGS): it cannot be deleted`,
      );
    }
    return this.inner.deleteTag(repository, tag);
  }

  getTag(repository: string, tag: string): Promise<BlobDigest | null> {
    return this.inner.getTag(repository, tag);
  }
  listTags(repository: string): Promise<string[]> {
    return this.inner.listTags(repository);
  }
  listRepositories(): Promise<string[]> {
    return this.inner.listRepositories();
  }
  hasRepository(repository: string): Promise<boolean> {
    return this.inner.hasRepository(repository);
  }
  linkManifest(repository: string, digest: BlobDigest): Promise<void> {
    return this.inner.linkManifest(repository, digest);
  }
  hasManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.inner.hasManifest(repository, digest);
  }
  unlinkManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.inner.unlinkManifest(repository, digest);
  }
  listManifests(repository: string): Promise<BlobDigest[]> {
    return this.inner.listManifests(repository);
  }
  linkBlob(repository: string, digest: BlobDigest): Promise<void> {
    return this.inner.linkBlob(repository, digest);
  }
  hasBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.inner.hasBlob(repository, digest);
  }
  unlinkBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.inner.unlinkBlob(repository, digest);
  }
}
