import { BlobDigest } from './blob-store';
import { StorageError } from './storage-error';

/**
 * Repository metadata: tags, which manifests and which blobs belong to a repository.
 * Blobs themselves live in the {@link BlobStore}; a repository only links to them, so a
 * registry serves a layer from a repository only when {@link RepositoryStore.hasBlob} says so.
 *
 * Names are validated on every call: NAME_INVALID for a bad repository, TAG_INVALID for a bad
 * tag, DIGEST_INVALID for a bad digest.
 */
export interface RepositoryStore {
  /** Points `tag` at a manifest digest (creates or moves it). */
  setTag(repository: string, tag: string, digest: BlobDigest): Promise<void>;
  /** The manifest digest a tag points at, or null. */
  getTag(repository: string, tag: string): Promise<BlobDigest | null>;
  /** Tags of a repository, sorted; empty for an unknown repository. */
  listTags(repository: string): Promise<string[]>;
  /** True when a tag was deleted. */
  deleteTag(repository: string, tag: string): Promise<boolean>;
  /** Every repository with at least one tag, manifest or blob link, sorted. */
  listRepositories(): Promise<string[]>;
  /** True when the repository has any tag, manifest or blob link. */
  hasRepository(repository: string): Promise<boolean>;

  /** Records that a manifest (by digest) belongs to the repository. Idempotent. */
  linkManifest(repository: string, digest: BlobDigest): Promise<void>;
  hasManifest(repository: string, digest: BlobDigest): Promise<boolean>;
  /** True when a link was removed. Does not touch tags pointing at it. */
  unlinkManifest(repository: string, digest: BlobDigest): Promise<boolean>;
  /** Manifest digests linked to the repository, sorted. */
  listManifests(repository: string): Promise<BlobDigest[]>;

  /** Records that the repository may serve a blob (layer or config). Idempotent. */
  linkBlob(repository: string, digest: BlobDigest): Promise<void>;
  hasBlob(repository: string, digest: BlobDigest): Promise<boolean>;
  /** True when a link was removed. */
  unlinkBlob(repository: string, digest: BlobDigest): Promise<boolean>;
  /**
   * Whether a tag may never move or go away once set (IMMUTABLE_TAGS); absent: none is. Callers
   * that delete several tags ask first, so that a refusal leaves all of them in place.
   */
  isImmutable?(repository: string, tag: string): boolean;
  /**
   * Throws TAG_IMMUTABLE when setting the tag to `digest` would be refused; lets a writer refuse
   * before it stores anything (the /v2 manifest PUT). Absent: every tag may be set.
   */
  assertTagSettable?(repository: string, tag: string, digest: BlobDigest): Promise<void>;
}

/**
 * A {@link RepositoryStore} that passes every call to `inner`; the store wrappers (immutable
 * tags, repository events, quotas) extend it and override only what they add to. The optional
 * pre-checks pass through too, so a check of an inner wrapper holds through any outer ones.
 */
export abstract class ForwardingRepositoryStore implements RepositoryStore {
  protected constructor(protected readonly inner: RepositoryStore) {}

  setTag(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    return this.inner.setTag(repository, tag, digest);
  }
  getTag(repository: string, tag: string): Promise<BlobDigest | null> {
    return this.inner.getTag(repository, tag);
  }
  listTags(repository: string): Promise<string[]> {
    return this.inner.listTags(repository);
  }
  deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.inner.deleteTag(repository, tag);
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
  isImmutable(repository: string, tag: string): boolean {
    return this.inner.isImmutable?.(repository, tag) ?? false;
  }
  async assertTagSettable(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    await this.inner.assertTagSettable?.(repository, tag, digest);
  }
}

/** Throws TAG_IMMUTABLE when any of `tags` is immutable in `store` (before deleting any of them). */
export function assertTagsRemovable(
  store: RepositoryStore,
  repository: string,
  tags: readonly string[],
): void {
  const locked = tags.filter((t) => store.isImmutable?.(repository, t) === true);
  if (locked.length > 0) {
    throw new StorageError(
      'TAG_IMMUTABLE',
      `tag ${locked.map((t) => `${repository}:${t}`).join(', ')} is immutable (IMMUTABLE_TAGS): it cannot be deleted`,
    );
  }
}

/** Repository name grammar from the OCI distribution spec (`<name>` in the pull section). */
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
const REPOSITORY_NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
/** Tag grammar from the same spec. */
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Docker and distribution cap the full name (host included) at 255 characters. */
const MAX_REPOSITORY_NAME = 255;

/** True when `name` is a valid repository name. */
export function isRepositoryName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= MAX_REPOSITORY_NAME && REPOSITORY_NAME.test(name);
}

/** True when `tag` is a valid tag. */
export function isTagName(tag: unknown): tag is string {
  return typeof tag === 'string' && TAG.test(tag);
}

/**
 * Throws StorageError NAME_INVALID unless `name` matches the spec grammar. The grammar has no
 * `.`/`..` components, empty components, leading separators or upper case, so a valid name is
 * also a safe relative path / key prefix.
 */
export function assertRepositoryName(name: string): string {
  if (!isRepositoryName(name)) {
    throw new StorageError('NAME_INVALID', `invalid repository name: ${JSON.stringify(name)}`);
  }
  return name;
}

/** Throws StorageError TAG_INVALID unless `tag` matches the spec grammar. */
export function assertTagName(tag: string): string {
  if (!isTagName(tag)) {
    throw new StorageError('TAG_INVALID', `invalid tag: ${JSON.stringify(tag)}`);
  }
  return tag;
}
