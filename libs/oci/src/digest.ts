import { createHash, Hash } from 'node:crypto';
import { Transform, TransformCallback } from 'node:stream';
import { OciError } from './oci-error';

/** A content digest `algorithm:encoded`, e.g. `sha256:<64 hex>`. */
export type Digest = `${string}:${string}`;
/** A sha256 digest, the algorithm Stratum writes. */
export type Sha256Digest = `sha256:${string}`;

/** Parsed form of a {@link Digest}. */
export interface ParsedDigest {
  readonly algorithm: 'sha256' | 'sha512';
  readonly encoded: string;
  readonly digest: Digest;
}

// Grammar: https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests
// The generic grammar admits any algorithm; only the registered ones with a fixed hex length are accepted.
const DIGEST_GRAMMAR = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const REGISTERED: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

/** Validates a digest; throws {@link OciError} DIGEST_INVALID for anything but sha256/sha512 in lowercase hex. */
export function parseDigest(value: string): ParsedDigest {
  const m = DIGEST_GRAMMAR.exec(value);
  const algorithm = m?.[1];
  const encoded = m?.[2];
  if (algorithm === undefined || encoded === undefined) {
    throw new OciError('DIGEST_INVALID', `malformed digest: ${JSON.stringify(value)}`);
  }
  const pattern = REGISTERED[algorithm];
  if (pattern === undefined) {
    throw new OciError('DIGEST_INVALID', `unsupported digest algorithm: ${algorithm}`);
  }
  if (!pattern.test(encoded)) {
    throw new OciError('DIGEST_INVALID', `malformed ${algorithm} digest: ${JSON.stringify(value)}`);
  }
  return { algorithm: algorithm as 'sha256' | 'sha512', encoded, digest: value as Digest };
}

/** True when `value` is a valid sha256 or sha512 digest. */
export function isDigest(value: unknown): value is Digest {
  if (typeof value !== 'string') {
    return false;
  }
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * True when `value` is a valid sha256 digest (`sha256:<64 lowercase hex>`). The one check of
 * that form in Stratum: storage's `isBlobDigest` and the layer cache's diffIDs use it.
 */
export function isSha256Digest(value: unknown): value is Sha256Digest {
  return typeof value === 'string' && value.startsWith('sha256:') && REGISTERED.sha256.test(value.slice(7));
}

/** sha256 digest of bytes (a string is hashed as UTF-8). */
export function sha256Digest(data: Uint8Array | string): Sha256Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** What a {@link DigestStream} saw. */
export interface DigestResult {
  readonly digest: Sha256Digest;
  readonly size: number;
}

/**
 * A pass-through that hashes (sha256) and counts the bytes flowing through it, so a layer can be
 * digested on its way to disk or storage without a second read:
 *
 * ```ts
 * const hasher = new DigestStream();
 * await pipeline(source, hasher, destination);
 * const { digest, size } = hasher.result(); // or: await hasher.done
 * ```
 */
export class DigestStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;
  private final: DigestResult | undefined;
  /** Resolves once the last byte has passed; rejects if the stream is destroyed with an error first. */
  readonly done: Promise<DigestResult>;

  constructor() {
    super();
    this.done = new Promise<DigestResult>((resolve, reject) => {
      this.once('digest', resolve);
      this.once('error', reject);
      this.once('close', () => reject(new Error('stream closed before it ended')));
    });
    // A consumer may only use result(); never let `done` become an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.count;
  }

  /** Digest and size; throws if the stream has not ended yet. */
  result(): DigestResult {
    if (this.final === undefined) {
      throw new Error('DigestStream.result() called before the stream ended');
    }
    return this.final;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.final = { digest: `sha256:${this.hash.digest('hex')}`, size: this.count };
    this.emit('digest', this.final);
    callback();
  }
}
