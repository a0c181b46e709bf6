import type { StorageConfig } from '@stratum/config';
import { BucketItem, Client, ClientOptions } from 'minio';
import { StorageError } from './storage-error';

/** The S3 variant of the config. */
export type S3StorageConfig = Extract<StorageConfig, { kind: 's3' }>;

/** A minio client for an `S3_ENDPOINT` URL such as `http://127.0.0.1:9000` (path-style addressing). */
export function createS3Client(config: S3StorageConfig, extra: Partial<ClientOptions> = {}): Client {
  const url = new URL(config.endpoint);
  const useSSL = url.protocol === 'https:';
  return new Client({
    endPoint: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? (useSSL ? 443 : 80) : Number(url.port),
    useSSL,
    accessKey: config.accessKey,
    secretKey: config.secretKey,
    region: config.region,
    // Path-style works with MinIO, s3rver and AWS alike; virtual-host style needs DNS per bucket.
    pathStyle: true,
    ...extra,
  });
}

const NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchUpload']);
const CONNECTION = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
]);
const SERVER_SIDE = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'RequestTimeout',
  'NoSuchBucket',
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'XMinioServerNotInitialized',
]);

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** True when an S3 error means "no such object". */
export function isS3NotFound(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && NOT_FOUND.has(code);
}

/**
 * StorageErrors pass through; unreachable endpoints, refused credentials, missing bucket and 5xx
 * become UNAVAILABLE (the service cannot do its job, the client's request was fine).
 */
export function mapS3Error(err: unknown, what: string): Error {
  if (err instanceof StorageError) {
    return err;
  }
  const code = codeOf(err);
  const causeCode = typeof err === 'object' && err !== null && 'cause' in err ? codeOf(err.cause) : undefined;
  const aggregated =
    err instanceof AggregateError
      ? err.errors.map(codeOf).find((c) => c !== undefined && CONNECTION.has(c))
      : undefined;
  const effective = [code, causeCode, aggregated].find(
    (c) => c !== undefined && (CONNECTION.has(c) || SERVER_SIDE.has(c)),
  );
  if (effective !== undefined) {
    return new StorageError('UNAVAILABLE', `object storage unavailable while ${what}: ${effective}`, {
      cause: err,
    });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** Object listing as an async iterable, with errors mapped. */
export async function* listObjects(
  client: Client,
  bucket: string,
  prefix: string,
): AsyncGenerator<BucketItem> {
  const stream = client.listObjectsV2(bucket, prefix, true);
  try {
    for await (const item of stream) {
      yield item as BucketItem;
    }
  } catch (err) {
    throw mapS3Error(err, `listing ${prefix}`);
  } finally {
    stream.destroy();
  }
}

/** Removes an object, treating "already gone" as success. */
export async function removeQuietly(client: Client, bucket: string, key: string): Promise<void> {
  try {
    await client.removeObject(bucket, key);
  } catch (err) {
    if (!isS3NotFound(err)) {
      throw mapS3Error(err, `removing ${key}`);
    }
  }
}

/** Size of an object, or null when absent. */
export async function statOrNull(client: Client, bucket: string, key: string): Promise<number | null> {
  try {
    return (await client.statObject(bucket, key)).size;
  } catch (err) {
    if (isS3NotFound(err)) {
      return null;
    }
    throw mapS3Error(err, `reading ${key}`);
  }
}

/** Size and LastModified of an object, or null when absent. */
export async function statObjectOrNull(
  client: Client,
  bucket: string,
  key: string,
): Promise<{ size: number; lastModified: Date } | null> {
  try {
    const s = await client.statObject(bucket, key);
    return { size: s.size, lastModified: s.lastModified };
  } catch (err) {
    if (isS3NotFound(err)) {
      return null;
    }
    throw mapS3Error(err, `reading ${key}`);
  }
}

/** Creates the bucket when missing (several replicas may race; "already yours" is fine). */
export async function ensureBucket(client: Client, bucket: string, region: string): Promise<void> {
  try {
    if (await client.bucketExists(bucket)) {
      return;
    }
    await client.makeBucket(bucket, region);
  } catch (err) {
    const code = codeOf(err);
    if (code === 'BucketAlreadyOwnedByYou' || code === 'BucketAlreadyExists') {
      return;
    }
    throw mapS3Error(err, `preparing bucket ${bucket}`);
  }
}
