import { Global, Module } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { createStorage, Storage } from './create-storage';
import { RepositoryEventSink } from './repository-events';
import { RedisQuotaLedger } from './repository-quotas';
import type { TagClaims } from './immutable-tags';

/** Injection token for the {@link BlobStore}. */
export const BLOB_STORE = Symbol('BLOB_STORE');
/** Injection token for the {@link RepositoryStore}. */
export const REPOSITORY_STORE = Symbol('REPOSITORY_STORE');
/** Injection token for the {@link UploadPartStore}. */
export const UPLOAD_PART_STORE = Symbol('UPLOAD_PART_STORE');
/** Injection token for the {@link MarkerStore}. */
export const MARKER_STORE = Symbol('MARKER_STORE');
/**
 * Injection token of the {@link RedisQuotaLedger} (REPOSITORY_QUOTAS), provided where Redis is
 * (JobsModule); absent or null: no quotas.
 */
export const QUOTA_LEDGER = Symbol('QUOTA_LEDGER');
/**
 * Injection token of the {@link RepositoryEventSink} told of every tag set or deleted (registry
 * notifications), provided where Redis is (JobsModule); absent or null: none.
 */
export const REPOSITORY_EVENTS = Symbol('REPOSITORY_EVENTS');
/** Injection token of the immutable tags' {@link TagClaims} (Redis), provided by JobsModule. */
export const TAG_CLAIMS = Symbol('TAG_CLAIMS');
/** Internal: both stores, built once. */
const STORAGE = Symbol('STORAGE');

/**
 * Global module providing {@link BLOB_STORE} and {@link REPOSITORY_STORE} for the backend chosen
 * in the config (`STRATUM_CONFIG`, from `ConfigModule.forRoot()`). Boot fails if the backend
 * cannot be prepared.
 */
@Global()
@Module({
  providers: [
    {
      provide: STORAGE,
      inject: [
        STRATUM_CONFIG,
        { token: QUOTA_LEDGER, optional: true },
        { token: REPOSITORY_EVENTS, optional: true },
        { token: TAG_CLAIMS, optional: true },
      ],
      useFactory: (
        config: StratumConfig,
        quotas: RedisQuotaLedger | null | undefined,
        events: RepositoryEventSink | null | undefined,
        tagClaims: TagClaims | undefined,
      ): Promise<Storage> =>
        createStorage(config.storage, {
          immutableTags: config.immutableTags,
          quotas: quotas ?? null,
          events: events ?? null,
          tagClaims: tagClaims ?? null,
        }),
    },
    { provide: BLOB_STORE, inject: [STORAGE], useFactory: (s: Storage) => s.blobs },
    { provide: REPOSITORY_STORE, inject: [STORAGE], useFactory: (s: Storage) => s.repositories },
    { provide: UPLOAD_PART_STORE, inject: [STORAGE], useFactory: (s: Storage) => s.uploads },
    { provide: MARKER_STORE, inject: [STORAGE], useFactory: (s: Storage) => s.markers },
  ],
  exports: [BLOB_STORE, REPOSITORY_STORE, UPLOAD_PART_STORE, MARKER_STORE],
})
export class StorageModule {}
