import { BlobDigest } from './blob-store';
import { StorageError } from './storage-error';

const SHA256_DIGEST = /^sha256:([a-f0-9]{64})$/;

/** True when `value` is a `sha256:<64 lowercase hex>` digest, the only algorithm this store keeps. */
export function isBlobDigest(value: unknown): value is BlobDigest {
  return typeof value === 'string' && SHA256_DIGEST.test(value);
}

/**
 * Validates a digest string and returns it typed with its hex part.
 * Throws StorageError DIGEST_INVALID for anything but `sha256:<64 lowercase hex>`.
 */
export function parseBlobDigest(value: string): { digest: BlobDigest; algorithm: 'sha256'; hex: string } {
  const m = SHA256_DIGEST.exec(value);
  if (!m) {
    throw new StorageError('DIGEST_INVALID', `invalid or unsupported digest: ${JSON.stringify(value)}`);
  }
  return { digest: value as BlobDigest, algorithm: 'sha256', hex: m[1] };
}

/** The hex part of a valid digest (throws DIGEST_INVALID otherwise). */
export function digestHex(value: string): string {
  return parseBlobDigest(value).hex;
}
