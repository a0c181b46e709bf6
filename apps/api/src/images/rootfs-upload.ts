import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { StratumError } from '@stratum/contracts';
import { detectCompression } from '@stratum/layers';
import { inspectTar, TarUploadErrors } from '../common/tar-upload';

/** What the upload held, known once the tar has been read to its end. */
export interface RootfsSummary {
  readonly entries: number;
  /** Bytes of the uncompressed tar. */
  readonly bytes: number;
}

const ROOTFS_ERRORS: TarUploadErrors = {
  empty: () => new StratumError('BAD_REQUEST', 'the request has no body: send the root filesystem as a tar'),
  invalid: (why) => new StratumError('LAYER_INVALID', `the body is not a valid tar archive: ${why}`),
  tooLarge: (limit) =>
    new StratumError('BLOB_TOO_LARGE', `the root filesystem tar is larger than ${limit} bytes`),
  source: (err) => new StratumError('LAYER_INVALID', `the body is not a valid gzip stream: ${err.message}`),
};

/** Replays `head` then the rest of `it` as a byte stream. */
function replay(head: Buffer, it: AsyncIterator<unknown>, ended: boolean): Readable {
  return Readable.from(
    (async function* (): AsyncGenerator<Buffer> {
      if (head.length > 0) {
        yield head;
      }
      if (ended) {
        return;
      }
      for (;;) {
        const next = await it.next();
        if (next.done === true) {
          return;
        }
        const value: unknown = next.value;
        yield Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
      }
    })(),
    { objectMode: false },
  );
}

/**
 * The body of an import as a plain tar (`docker import` takes a tar, plain or gzip): sniffs
 * gzip from the first bytes and inflates it, then checks the plain tar as a build context is
 * checked (inspectTar: size cap on the uncompressed bytes, strict parse on the way), so a body
 * that is not a tar fails the import with LAYER_INVALID instead of becoming a layer. Nothing is
 * buffered beyond one chunk.
 */
export async function rootfsTar(
  source: Readable,
  limit: number,
): Promise<{ tar: Readable; summary: Promise<RootfsSummary> }> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  while (length < 4) {
    const next = await it.next();
    if (next.done === true) {
      ended = true;
      break;
    }
    const value: unknown = next.value;
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
    chunks.push(chunk);
    length += chunk.length;
  }
  if (length === 0) {
    throw ROOTFS_ERRORS.empty();
  }
  const head = Buffer.concat(chunks);
  const compression = detectCompression(head);
  if (compression === 'zstd') {
    source.destroy();
    throw new StratumError(
      'UNSUPPORTED',
      'zstd-compressed imports are not supported: send a plain or gzip tar',
    );
  }
  let plain: Readable = replay(head, it, ended);
  if (compression === 'gzip') {
    const gunzip = createGunzip();
    pipeline(plain, gunzip, () => undefined);
    plain = gunzip;
  }
  const { bytes: tar, summary: checked } = inspectTar(plain, limit, ROOTFS_ERRORS);
  const summary = checked.then(({ entries, bytes }): RootfsSummary => ({ entries, bytes }));
  summary.catch(() => undefined); // the caller may await the store first
  return { tar, summary };
}
