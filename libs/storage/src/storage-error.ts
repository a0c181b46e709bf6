/**
 * Every failure the storage layer reports on purpose. The names follow the OCI distribution
 * spec's error codes where one exists, so the registry can answer with them unchanged.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
export const STORAGE_ERROR_CODES = [
  'BLOB_UNKNOWN',
  'DIGEST_INVALID',
  'SIZE_INVALID',
  'BLOB_TOO_LARGE',
  'RANGE_INVALID',
  'NAME_INVALID',
  'MANIFEST_UNKNOWN',
  'TAG_INVALID',
  'UNAVAILABLE',
  /** Stored bytes no longer hash to their digest (tampered or rotted); the blob was quarantined. */
  'BLOB_CORRUPT',
  /** The tag matches IMMUTABLE_TAGS and would move to another digest or be deleted. */
  'TAG_IMMUTABLE',
  /** The write would take the repositories of a REPOSITORY_QUOTAS pattern past its limit. */
  'QUOTA_EXCEEDED',
] as const;

/** One of {@link STORAGE_ERROR_CODES}. */
export type StorageErrorCode = (typeof STORAGE_ERROR_CODES)[number];

/** A storage failure with a machine-readable {@link StorageErrorCode}; map it to HTTP in one filter. */
export class StorageError extends Error {
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StorageError';
  }
}

/** True when `err` is a {@link StorageError}, optionally with the given code. */
export function isStorageError(err: unknown, code?: StorageErrorCode): err is StorageError {
  return err instanceof StorageError && (code === undefined || err.code === code);
}
