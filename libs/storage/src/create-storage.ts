import type { StorageConfig } from '@stratum/config';
import { BlobStore } from './blob-store';
import { FsBlobStore } from './fs-blob-store';
import { FsRepositoryStore } from './fs-repository-store';
import { RepositoryStore } from './repository-store';
import { StorageError } from './storage-error';

/** The two stores a service needs, on one backend. */
export interface Storage {
  readonly blobs: BlobStore;
  readonly repositories: RepositoryStore;
}

/**
 * Builds the stores for the configured backend and prepares it (directories, bucket), so a
 * misconfigured or unreachable backend fails at boot.
 */
export async function createStorage(config: StorageConfig): Promise<Storage> {
  switch (config.kind) {
    case 'fs': {
      const blobs = new FsBlobStore(config.root);
      await blobs.init();
      return { blobs, repositories: new FsRepositoryStore(config.root) };
    }
    case 's3':
      throw new StorageError('UNAVAILABLE', 'the S3 backend is not implemented yet');
  }
}
