import { Readable } from 'node:stream';
import { StratumError } from '@stratum/contracts';
import { decompressed } from '@stratum/layers';
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
  tooManyEntries: (limit) =>
    new StratumError(
      'BLOB_TOO_LARGE',
      `the root filesystem tar holds more than ${limit} entries (the limit MAX_CONTEXT_ENTRIES)`,
    ),
  source: (err) =>
    new StratumError('LAYER_INVALID', `the body is not a valid gzip or zstd stream: ${err.message}`),
};

/**
 * The body of an import as a plain tar (`docker import` takes a tar, plain or compressed): the
 * layers lib sniffs gzip or zstd from the first bytes and inflates it, then the plain tar is
 * checked as a build context is (inspectTar: size cap on the uncompressed bytes, strict parse
 * on the way), so a body
 * that is not a tar fails the import with LAYER_INVALID instead of becoming a layer. Nothing is
 * buffered beyond one chunk.
 */
export async function rootfsTar(
  source: Readable,
  limit: number,
  /** Most entries (MAX_CONTEXT_ENTRIES: the check remembers each one); unlimited when unset. */
  maxEntries?: number,
): Promise<{ tar: Readable; summary: Promise<RootfsSummary> }> {
  const { stream } = await decompressed(source);
  const plain = stream instanceof Readable ? stream : Readable.from(stream, { objectMode: false });
  const { bytes: tar, summary: checked } = inspectTar(
    plain,
    limit,
    ROOTFS_ERRORS,
    maxEntries === undefined ? {} : { maxEntries },
  );
  const summary = checked.then(({ entries, bytes }): RootfsSummary => ({ entries, bytes }));
  summary.catch(() => undefined); // the caller may await the store first
  return { tar, summary };
}
