import { isSha256Digest } from '@stratum/oci';
import { BlobDigest } from './blob-store';
import { StorageError } from './storage-error';

// The digest grammar lives in @stratum/oci (isSha256Digest); these only give its answer the
// store's names and error type.

/** True when `value` is a `sha256:<64 lowercase hex>` digest, the only algorithm this store keeps. */
export function isBlobDigest(value: unknown): value is BlobDigest {
  return isSha256Digest(value);
}

/**
 * Validates a digest string and returns it typed with its hex part.
 * Throws StorageError DIGEST_INVALID for anything but `sha256:<64 lowercase hex>`.
 */
export function parseBlobDigest(value: string): { digest: BlobDigest; algorithm: 'sha256'; hex: string } {
  if (!isSha256Digest(value)) {
    throw new StorageError('DIGEST_INVALID', `invalid or unsupported digest: ${JSON.stringify(value)}`);
  }
  return { digest: value, algorithm: 'sha256', hex: value.slice('sha256:'.length) };
}

/** The hex part of a valid digest (throws DIGEST_INVALID otherwise). */
export function digestHex(value: string): string {
  return parseBlobDigest(value).hex;
}
