import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { Client, CopyDestinationOptions, CopySourceOptions } from 'minio';
import { Logger } from '@nestjs/common';
import {
  BlobDigest,
  BlobStat,
  BlobStore,
  BlobVerifyResult,
  ByteRange,
  PutBlobOptions,
  PutBlobResult,
} from './blob-store';
import { bufferChunks, BlobVerifier, resolveRange } from './blob-verifier';
import { parseBlobDigest } from './digest';
import {
  isS3NotFound,
  listObjects,
  mapS3Error,
  removeQuietly,
  statObjectOrNull,
  statOrNull,
} from './s3-util';
import { StorageError } from './storage-error';

const BLOB_PREFIX = 'blobs/sha256/';
const TMP_PREFIX = 'tmp/';
const QUARANTINE_PREFIX = 'quarantine/';
const HEX64 = /^[a-f0-9]{64}$/;
/** S3 limits: parts of 5 MiB at least (but the last), 10 000 parts, 5 GiB per single CopyObject. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;
const MAX_SINGLE_COPY = 5 * 1024 * 1024 * 1024;

export interface S3BlobStoreOptions {
  /**
   * Multipart part size. S3 needs each part's length up front, so one part is buffered in memory
   * per upload in flight; the largest blob is `partSize * 10 000`. Default 8 MiB (~78 GiB).
   */
  readonly partSize?: number;
  /** Presigned GET URLs for {@link S3BlobStore.redirectUrl}: a client on the endpoint clients reach, and their lifetime. */
  readonly redirect?: { readonly client: Client; readonly seconds: number };
}

/**
 * {@link BlobStore} on S3 / MinIO via the `minio` client.
 *
 * Uploads stream to `tmp/<uuid>` (multipart, one part in memory at a time) while hashing; only a
 * verified upload is copied server-side to `blobs/sha256/<hex>`, and the temp object is deleted
 * on every path. Objects under `tmp/` left by a crashed process are garbage: expire them with a
 * bucket lifecycle rule.
 */
export class S3BlobStore implements BlobStore {
  private readonly partSize: number;
  private readonly logger = new Logger('S3BlobStore');
  private readonly redirect: { readonly client: Client; readonly seconds: number } | null;

  constructor(
    private readonly client: Client,
    readonly bucket: string,
    options: S3BlobStoreOptions = {},
  ) {
    this.partSize = options.partSize ?? 8 * 1024 * 1024;
    this.redirect = options.redirect ?? null;
    if (this.partSize < MIN_PART_SIZE) {
      throw new RangeError(`partSize must be at least ${MIN_PART_SIZE}`);
    }
  }

  /** Object key of a blob (the digest is validated). */
  keyOf(digest: BlobDigest): string {
    return BLOB_PREFIX + parseBlobDigest(digest).hex;
  }

  async stat(digest: BlobDigest): Promise<BlobStat> {
    const s = await statObjectOrNull(this.client, this.bucket, this.keyOf(digest));
    return s === null ? { exists: false } : { exists: true, size: s.size, modifiedAt: s.lastModified };
  }

  /** A presigned GET of the blob's object on the redirect endpoint (signed locally, no request), or null. */
  async redirectUrl(digest: BlobDigest): Promise<string | null> {
    if (this.redirect === null) {
      return null;
    }
    try {
      return await this.redirect.client.presignedGetObject(
        this.bucket,
        this.keyOf(digest),
        this.redirect.seconds,
      );
    } catch (err) {
      throw mapS3Error(err, `presigning ${digest}`);
    }
  }

  async has(digest: BlobDigest): Promise<boolean> {
    return (await this.stat(digest)).exists;
  }

  async get(digest: BlobDigest, range?: ByteRange): Promise<Readable> {
    const key = this.keyOf(digest);
    try {
      if (range === undefined) {
        return await this.client.getObject(this.bucket, key);
      }
      const size = await statOrNull(this.client, this.bucket, key);
      if (size === null) {
        throw new StorageError('BLOB_UNKNOWN', `blob unknown: ${digest}`);
      }
      const r = resolveRange(size, range);
      // resolveRange returns non-null when a range is given.
      const { start, end } = r ?? { start: 0, end: size - 1 };
      const length = end - start + 1;
      const res = await this.client.getPartialObject(this.bucket, key, start, length);
      return limitRange(res, start, length);
    } catch (err) {
      if (isS3NotFound(err)) {
        throw new StorageError('BLOB_UNKNOWN', `blob unknown: ${digest}`);
      }
      throw mapS3Error(err, `reading ${digest}`);
    }
  }

  async put(data: Readable, options: PutBlobOptions = {}): Promise<PutBlobResult> {
    let verifier: BlobVerifier;
    try {
      verifier = new BlobVerifier(options);
    } catch (err) {
      data.destroy();
      throw err;
    }
    const tmpKey = TMP_PREFIX + randomUUID();
    const upload = new MultipartUpload(this.client, this.bucket, tmpKey, this.partSize);
    try {
      for await (const chunk of bufferChunks(data)) {
        verifier.update(chunk); // throws BLOB_TOO_LARGE / SIZE_INVALID on the first byte too many
        await upload.write(chunk);
      }
      // Verified before the temp object is even completed: a bad upload never becomes an object.
      const { digest, size } = verifier.finish();
      await upload.complete();
      const created = await this.publish(tmpKey, digest, size);
      return { digest, size, created };
    } catch (err) {
      data.destroy();
      await upload.abort().catch(() => undefined);
      throw mapS3Error(err, 'uploading a blob');
    } finally {
      await removeQuietly(this.client, this.bucket, tmpKey).catch(() => undefined);
    }
  }

  /** Server-side copy of a verified temp object to its content address, unless already there. */
  private async publish(tmpKey: string, digest: BlobDigest, size: number): Promise<boolean> {
    const key = this.keyOf(digest);
    if ((await statOrNull(this.client, this.bucket, key)) !== null) {
      return false;
    }
    const source = new CopySourceOptions({ Bucket: this.bucket, Object: tmpKey });
    const dest = new CopyDestinationOptions({ Bucket: this.bucket, Object: key });
    try {
      if (size <= MAX_SINGLE_COPY) {
        await this.client.copyObject(source, dest);
      } else {
        // Beyond 5 GiB S3 needs a multipart copy (UploadPartCopy), which composeObject does.
        await this.client.composeObject(dest, [source]);
      }
    } catch (err) {
      // A concurrent put of the same blob may have published it meanwhile (s3rver answers the
      // loser of two copies to one key with a 500): the content address holds the same bytes.
      if ((await statOrNull(this.client, this.bucket, key).catch(() => null)) === size) {
        return false;
      }
      throw mapS3Error(err, `publishing ${digest}`);
    }
    return true;
  }

  async delete(digest: BlobDigest): Promise<boolean> {
    const key = this.keyOf(digest);
    if ((await statOrNull(this.client, this.bucket, key)) === null) {
      return false;
    }
    await removeQuietly(this.client, this.bucket, key);
    return true;
  }

  /**
   * Re-reads and hashes the object (fsck). Serving does not re-hash on S3: the bucket is reachable
   * only with the store's credentials, not through a build step's filesystem, and a per-GET check
   * would cost a second request; fsck is the check. A mismatch is copied to `quarantine/` and
   * removed from its content address.
   */
  async verify(digest: BlobDigest): Promise<BlobVerifyResult> {
    const key = this.keyOf(digest);
    const hash = createHash('sha256');
    let size = 0;
    try {
      const stream = await this.client.getObject(this.bucket, key);
      for await (const chunk of bufferChunks(stream)) {
        hash.update(chunk);
        size += chunk.length;
      }
    } catch (err) {
      if (isS3NotFound(err)) {
        return { status: 'missing' };
      }
      throw mapS3Error(err, `verifying ${digest}`);
    }
    const actual: BlobDigest = `sha256:${hash.digest('hex')}`;
    if (actual === digest) {
      return { status: 'ok', size };
    }
    const target = `${QUARANTINE_PREFIX}${parseBlobDigest(digest).hex}.${Date.now()}`;
    try {
      await this.client.copyObject(
        new CopySourceOptions({ Bucket: this.bucket, Object: key }),
        new CopyDestinationOptions({ Bucket: this.bucket, Object: target }),
      );
      await removeQuietly(this.client, this.bucket, key);
    } catch (err) {
      throw mapS3Error(err, `quarantining ${digest}`);
    }
    this.logger.error(`blob ${digest} failed verification (its bytes hash to ${actual}): moved to ${target}`);
    return { status: 'quarantined', size, actual };
  }

  /**
   * Deletes `tmp/` objects older than `maxAgeMs` (left by a crashed process); prefer a bucket
   * lifecycle rule in production. Returns the count.
   */
  async sweepTemp(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    for await (const item of listObjects(this.client, this.bucket, TMP_PREFIX)) {
      if (item.name !== undefined && item.lastModified.getTime() < cutoff) {
        await removeQuietly(this.client, this.bucket, item.name);
        removed++;
      }
    }
    return removed;
  }

  async *list(): AsyncIterable<BlobDigest> {
    for await (const item of listObjects(this.client, this.bucket, BLOB_PREFIX)) {
      const hex = (item.name ?? '').slice(BLOB_PREFIX.length);
      if (HEX64.test(hex)) {
        yield `sha256:${hex}`;
      }
    }
  }
}

/**
 * A multipart upload that starts only once more than one part's worth of bytes has arrived;
 * smaller objects go up in one PutObject. At most one part is held in memory.
 */
export class MultipartUpload {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private uploadId: string | undefined;
  private readonly parts: { part: number; etag: string }[] = [];
  private done = false;

  constructor(
    private readonly client: Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly partSize: number,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes > this.partSize) {
      // Strictly more than a part: the last part may then be short, never empty.
      await this.flushPart(this.take(this.partSize));
    }
  }

  async complete(): Promise<void> {
    const rest = this.take(this.pendingBytes);
    if (this.uploadId === undefined) {
      await this.client.putObject(this.bucket, this.key, rest, rest.length);
    } else {
      await this.flushPart(rest);
      await this.client.completeMultipartUpload(this.bucket, this.key, this.uploadId, this.parts);
    }
    this.done = true;
  }

  /** Drops an unfinished multipart upload so its parts do not linger (and cost) on the server. */
  async abort(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    if (this.uploadId !== undefined && !this.done) {
      await this.client.abortMultipartUpload(this.bucket, this.key, this.uploadId);
    }
  }

  private take(n: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    const head = all.subarray(0, n);
    const tail = all.subarray(n);
    // Copy the short tail so it does not pin the whole part buffer in memory.
    this.pending = tail.length > 0 ? [Buffer.from(tail)] : [];
    this.pendingBytes = tail.length;
    return head;
  }

  private async flushPart(body: Buffer): Promise<void> {
    if (this.parts.length >= MAX_PARTS) {
      throw new StorageError('BLOB_TOO_LARGE', `blob exceeds ${MAX_PARTS} parts of ${this.partSize} bytes`);
    }
    this.uploadId ??= await this.client.initiateNewMultipartUpload(this.bucket, this.key, {});
    const part = this.parts.length + 1;
    const res = await this.client.uploadPart(
      {
        bucketName: this.bucket,
        objectName: this.key,
        uploadID: this.uploadId,
        partNumber: part,
        headers: {},
      },
      body,
    );
    this.parts.push({ part, etag: res.etag });
  }
}

/**
 * Guards a ranged response: some S3-compatible servers answer `bytes=0-0` (or any range) with more
 * than asked (s3rver treats an end of 0 as "to the end"). The body must start at `start`
 * (checked against Content-Range when present) and is cut at `length` bytes.
 */
function limitRange(res: Readable, start: number, length: number): Readable {
  const headers = (res as Readable & { headers?: Record<string, string | string[] | undefined> }).headers;
  const contentRange = headers?.['content-range'];
  const m = typeof contentRange === 'string' ? /^bytes (\d+)-/.exec(contentRange) : null;
  if (m && Number(m[1]) !== start) {
    res.destroy();
    throw new StorageError(
      'UNAVAILABLE',
      `object storage answered range ${String(contentRange)} for a request at ${start}`,
    );
  }
  return Readable.from(
    (async function* () {
      let left = length;
      for await (const chunk of res) {
        const buf = chunk as Buffer;
        if (buf.length >= left) {
          yield buf.subarray(0, left);
          return; // leaving the loop destroys the response
        }
        left -= buf.length;
        yield buf;
      }
    })(),
    { objectMode: false },
  );
}
