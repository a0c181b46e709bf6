import { Readable } from 'node:stream';

/** A `sha256:<64 hex>` digest. */
export type BlobDigest = `sha256:${string}`;

export interface ByteRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, inclusive (HTTP Range semantics). */
  readonly end: number;
}

export type BlobStat =
  | {
      readonly exists: true;
      readonly size: number;
      /**
       * When the blob was last written (fs mtime, S3 LastModified). Garbage collection never
       * deletes a blob younger than its grace period; a backend that cannot tell leaves it unset.
       */
      readonly modifiedAt?: Date;
    }
  | { readonly exists: false };

export interface PutBlobOptions {
  /** When given, the write fails with DIGEST_INVALID unless the bytes hash to it; nothing becomes visible. */
  readonly expectedDigest?: BlobDigest;
  /** When given, the write fails with SIZE_INVALID unless exactly this many bytes arrive. */
  readonly expectedSize?: number;
  /** When given, the write fails with BLOB_TOO_LARGE as soon as more bytes arrive. */
  readonly maxBytes?: number;
}

/**
 * Outcome of {@link BlobStore.verify}: `ok` (the bytes hash to the digest), `missing`, or
 * `quarantined` (they did not: the blob was moved aside and is no longer served or listed).
 */
export type BlobVerifyResult =
  | { readonly status: 'ok'; readonly size: number }
  | { readonly status: 'missing' }
  | { readonly status: 'quarantined'; readonly size: number; readonly actual: BlobDigest };

export interface PutBlobResult {
  readonly digest: BlobDigest;
  readonly size: number;
  /** False when the blob already existed (stored once, shared). */
  readonly created: boolean;
}

/**
 * Content-addressed blob storage. Writes stream, are verified against their digest and become
 * visible atomically: a reader never sees a partial or wrong blob.
 */
export interface BlobStore {
  stat(digest: BlobDigest): Promise<BlobStat>;
  has(digest: BlobDigest): Promise<boolean>;
  /**
   * Throws StorageError BLOB_UNKNOWN when absent, RANGE_INVALID for an unsatisfiable range, and
   * BLOB_CORRUPT when the backend found the bytes changed since they were verified (the blob is
   * quarantined then; the fs backend checks before returning a stream, see FsBlobStore).
   */
  get(digest: BlobDigest, range?: ByteRange): Promise<Readable>;
  put(data: Readable, options?: PutBlobOptions): Promise<PutBlobResult>;
  /**
   * A short-lived URL a client can GET the whole blob from without passing through us (S3
   * presigned), or null when the backend has none (fs, or redirects not configured).
   */
  redirectUrl?(digest: BlobDigest): Promise<string | null>;
  /** True when something was deleted. */
  delete(digest: BlobDigest): Promise<boolean>;
  list(): AsyncIterable<BlobDigest>;
  /**
   * Re-reads the whole blob and hashes it (fsck). A mismatch is quarantined: moved out of the
   * blob namespace (kept for inspection under `quarantine/`), so it is neither served nor listed.
   */
  verify(digest: BlobDigest): Promise<BlobVerifyResult>;
  /**
   * Removes temp uploads not written to for `maxAgeMs` (what a killed writer left). Returns how
   * many. Uploads still being written are younger and stay.
   */
  sweepTemp(maxAgeMs: number): Promise<number>;
}
