import { createHash, Hash } from 'node:crypto';
import { BlobDigest, PutBlobOptions } from './blob-store';
import { parseBlobDigest } from './digest';
import { StorageError } from './storage-error';

/**
 * Hashes and counts the bytes of one upload, and enforces {@link PutBlobOptions} as they arrive:
 * BLOB_TOO_LARGE / SIZE_INVALID are thrown from {@link update} on the first byte too many, so the
 * caller can stop reading at once; DIGEST_INVALID / SIZE_INVALID from {@link finish}.
 * Shared by both backends so they enforce exactly the same rules.
 */
export class BlobVerifier {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  constructor(private readonly options: PutBlobOptions = {}) {
    const { expectedDigest, expectedSize, maxBytes } = options;
    if (expectedDigest !== undefined) {
      parseBlobDigest(expectedDigest);
    }
    if (expectedSize !== undefined && !(Number.isSafeInteger(expectedSize) && expectedSize >= 0)) {
      throw new StorageError('SIZE_INVALID', `invalid expected size: ${String(expectedSize)}`);
    }
    if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes >= 0)) {
      throw new StorageError('SIZE_INVALID', `invalid maxBytes: ${String(maxBytes)}`);
    }
    if (expectedSize !== undefined && maxBytes !== undefined && expectedSize > maxBytes) {
      throw new StorageError(
        'BLOB_TOO_LARGE',
        `blob of ${expectedSize} bytes exceeds the limit of ${maxBytes}`,
      );
    }
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.count;
  }

  update(chunk: Buffer): void {
    this.count += chunk.length;
    const { expectedSize, maxBytes } = this.options;
    if (maxBytes !== undefined && this.count > maxBytes) {
      throw new StorageError('BLOB_TOO_LARGE', `blob exceeds the limit of ${maxBytes} bytes`);
    }
    if (expectedSize !== undefined && this.count > expectedSize) {
      throw new StorageError('SIZE_INVALID', `blob is larger than the expected ${expectedSize} bytes`);
    }
    this.hash.update(chunk);
  }

  /** Final digest and size, verified against the expectations. Call once, after the last chunk. */
  finish(): { digest: BlobDigest; size: number } {
    const digest: BlobDigest = `sha256:${this.hash.digest('hex')}`;
    const { expectedDigest, expectedSize } = this.options;
    if (expectedSize !== undefined && this.count !== expectedSize) {
      throw new StorageError('SIZE_INVALID', `got ${this.count} bytes, expected ${expectedSize}`);
    }
    if (expectedDigest !== undefined && digest !== expectedDigest) {
      throw new StorageError('DIGEST_INVALID', `content hashes to ${digest}, expected ${expectedDigest}`);
    }
    return { digest, size: this.count };
  }
}

/** Chunks of a readable as Buffers (object-mode strings are converted), for `for await` loops. */
export async function* bufferChunks(data: AsyncIterable<unknown>): AsyncGenerator<Buffer> {
  for await (const chunk of data) {
    if (Buffer.isBuffer(chunk)) {
      yield chunk;
    } else if (typeof chunk === 'string') {
      yield Buffer.from(chunk);
    } else if (chunk instanceof Uint8Array) {
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    } else {
      throw new TypeError('blob streams must yield Buffers, Uint8Arrays or strings');
    }
  }
}

/** Checks a requested range against a blob's size; clamps `end` like HTTP does. */
export function resolveRange(
  size: number,
  range: { start: number; end: number } | undefined,
): { start: number; end: number } | null {
  if (range === undefined) {
    return null;
  }
  const { start, end } = range;
  if (
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(end) ||
    start < 0 ||
    end < start ||
    start >= size
  ) {
    throw new StorageError('RANGE_INVALID', `range ${start}-${end} is not satisfiable for ${size} bytes`);
  }
  return { start, end: Math.min(end, size - 1) };
}
