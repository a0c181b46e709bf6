import { BlobDigest } from './blob-store';
import { ForwardingRepositoryStore, RepositoryStore } from './repository-store';

/**
 * A change of what a repository serves: a tag set (`push`, with its digest), a tag deleted
 * (`delete`, with the digest it named) or a manifest unlinked (`delete`, tag null).
 */
export interface RepositoryEvent {
  readonly action: 'push' | 'delete';
  readonly repository: string;
  readonly tag: string | null;
  readonly digest: BlobDigest;
}

/** Told of each {@link RepositoryEvent} once the store wrote it (REPOSITORY_EVENTS). */
export interface RepositoryEventSink {
  repositoryChanged(event: RepositoryEvent): Promise<void>;
}

/**
 * A {@link RepositoryStore} that tells `sink` of every tag set or deleted and every manifest
 * unlinked, after the write. Every path that tags or untags goes through the store — /v2
 * manifest PUT and DELETE, a build's own tags, push and commit jobs, imports, the tag and
 * delete APIs, retention — so registry notifications come from this one place. A sink error
 * is the sink's to log: the write has happened and stands.
 */
export class RepositoryEventsStore extends ForwardingRepositoryStore {
  constructor(
    inner: RepositoryStore,
    private readonly sink: RepositoryEventSink,
  ) {
    super(inner);
  }

  override async setTag(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    await this.inner.setTag(repository, tag, digest);
    await this.sink.repositoryChanged({ action: 'push', repository, tag, digest });
  }

  override async deleteTag(repository: string, tag: string): Promise<boolean> {
    const was = await this.inner.getTag(repository, tag);
    const deleted = await this.inner.deleteTag(repository, tag);
    if (deleted && was !== null) {
      await this.sink.repositoryChanged({ action: 'delete', repository, tag, digest: was });
    }
    return deleted;
  }

  override async unlinkManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    const unlinked = await this.inner.unlinkManifest(repository, digest);
    if (unlinked) {
      await this.sink.repositoryChanged({ action: 'delete', repository, tag: null, digest });
    }
    return unlinked;
  }
}
