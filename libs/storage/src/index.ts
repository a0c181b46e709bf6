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
export { assertRepositoryName, assertTagName, isRepositoryName, isTagName } from './repository-store';
export type { RepositoryStore } from './repository-store';
export { S3BlobStore } from './s3-blob-store';
export type { S3BlobStoreOptions } from './s3-blob-store';
export { S3RepositoryStore } from './s3-repository-store';
export { createS3Client, ensureBucket } from './s3-util';
export type { S3StorageConfig } from './s3-util';
export { isStorageError, STORAGE_ERROR_CODES, StorageError } from './storage-error';
export type { StorageErrorCode } from './storage-error';
export { BLOB_STORE, REPOSITORY_STORE, StorageModule } from './storage.module';
