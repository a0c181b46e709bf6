import type { StorageConfig } from '@stratum/config';
import { BlobStore } from './blob-store';
import { FsBlobStore } from './fs-blob-store';
import { FsRepositoryStore } from './fs-repository-store';
import { ImmutableTagRule, ImmutableTagsRepositoryStore, TagClaims } from './immutable-tags';
import { RepositoryEventSink, RepositoryEventsStore } from './repository-events';
import { RepositoryStore } from './repository-store';
import { QuotaRepositoryStore, RedisQuotaLedger } from './repository-quotas';
import { S3BlobStore } from './s3-blob-store';
import { S3RepositoryStore } from './s3-repository-store';
import { createS3Client, ensureBucket } from './s3-util';
import { FsMarkerStore, MarkerStore, S3MarkerStore } from './marker-store';
import { FsUploadPartStore, S3UploadPartStore, UploadPartStore } from './upload-part-store';

/** The two stores a service needs, on one backend. */
export interface Storage {
  readonly blobs: BlobStore;
  readonly repositories: RepositoryStore;
  /** Bytes of chunked registry uploads, on the same backend so every API replica sees them. */
  readonly uploads: UploadPartStore;
  /** Small notes outside the blob namespace (the shared-store probe). */
  readonly markers: MarkerStore;
}

/**
 * Builds the stores for the configured backend and prepares it (directories, bucket), so a
 * misconfigured or unreachable backend fails at boot.
 */
export async function createStorage(
  config: StorageConfig,
  options: {
    immutableTags?: readonly ImmutableTagRule[];
    /** Redis claims so that two first writers of an immutable tag cannot both win. */
    tagClaims?: TagClaims | null;
    quotas?: RedisQuotaLedger | null;
    /** Told of every tag set or deleted and manifest unlinked (registry notifications). */
    events?: RepositoryEventSink | null;
  } = {},
): Promise<Storage> {
  const rules = options.immutableTags ?? [];
  const quotas = options.quotas ?? null;
  const events = options.events ?? null;
  // Quotas outermost: withQuota() recognises the store by its class. Events inside the
  // immutability check: a refused write tells nothing.
  const guard = (repositories: RepositoryStore, blobs: BlobStore): RepositoryStore => {
    const immutable =
      rules.length > 0
        ? new ImmutableTagsRepositoryStore(repositories, rules, options.tagClaims ?? null)
        : repositories;
    const told = events !== null ? new RepositoryEventsStore(immutable, events) : immutable;
    return quotas !== null ? new QuotaRepositoryStore(told, blobs, quotas) : told;
  };
  switch (config.kind) {
    case 'fs': {
      const blobs = new FsBlobStore(config.root);
      await blobs.init();
      return {
        blobs,
        repositories: guard(new FsRepositoryStore(config.root), blobs),
        uploads: new FsUploadPartStore(config.root),
        markers: new FsMarkerStore(config.root),
      };
    }
    case 's3': {
      const client = createS3Client(config);
      await ensureBucket(client, config.bucket, config.region);
      const blobs = new S3BlobStore(client, config.bucket, {
        ...(config.redirectEndpoint
          ? {
              redirect: {
                // Only signs (the region is given, so minio asks nothing of this endpoint).
                client: createS3Client({ ...config, endpoint: config.redirectEndpoint }),
                seconds: config.redirectSeconds ?? 300,
              },
            }
          : {}),
      });
      return {
        blobs,
        repositories: guard(new S3RepositoryStore(client, config.bucket), blobs),
        uploads: new S3UploadPartStore(client, config.bucket),
        markers: new S3MarkerStore(client, config.bucket),
      };
    }
  }
}
