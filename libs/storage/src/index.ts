export type {
  BlobDigest,
  BlobStat,
  BlobStore,
  BlobVerifyResult,
  ByteRange,
  PutBlobOptions,
  PutBlobResult,
} from './blob-store';
export { BlobVerifier } from './blob-verifier';
export { createStorage } from './create-storage';
export type { Storage } from './create-storage';
export { digestHex, isBlobDigest, parseBlobDigest } from './digest';
export { FILE_CHUNK, FileSliceStream, sendStream } from './file-slice-stream';
export { FsBlobStore } from './fs-blob-store';
export { FsRepositoryStore } from './fs-repository-store';
export { ImmutableTagsRepositoryStore, RedisTagClaims } from './immutable-tags';
export type { ImmutableTagRule, TagClaims } from './immutable-tags';
export {
  assertRepositoryName,
  assertTagName,
  assertTagsRemovable,
  isRepositoryName,
  isTagName,
} from './repository-store';
export type { RepositoryStore } from './repository-store';
export { RepositoryEventsStore } from './repository-events';
export type { RepositoryEvent, RepositoryEventSink } from './repository-events';
export {
  QuotaExceededError,
  QuotaKeys,
  QuotaRepositoryStore,
  RedisQuotaLedger,
  withQuota,
} from './repository-quotas';
export type { QuotaBlob, QuotaRefusal, QuotaUsage, RepositoryQuotaRule } from './repository-quotas';
export { S3BlobStore } from './s3-blob-store';
export type { S3BlobStoreOptions } from './s3-blob-store';
export { S3RepositoryStore } from './s3-repository-store';
export { createS3Client, ensureBucket } from './s3-util';
export type { S3StorageConfig } from './s3-util';
export { isStorageError, STORAGE_ERROR_CODES, StorageError } from './storage-error';
export type { StorageErrorCode } from './storage-error';
export {
  BLOB_STORE,
  MARKER_STORE,
  QUOTA_LEDGER,
  REPOSITORY_EVENTS,
  REPOSITORY_STORE,
  TAG_CLAIMS,
  StorageModule,
  UPLOAD_PART_STORE,
} from './storage.module';
export { FsMarkerStore, S3MarkerStore } from './marker-store';
export type { MarkerStore } from './marker-store';
export { FsUploadPartStore, MAX_UPLOAD_PARTS, S3UploadPartStore } from './upload-part-store';
export type { UploadPartStore } from './upload-part-store';
