import { posix } from 'node:path';
import { PassThrough, Readable, Transform, TransformCallback } from 'node:stream';
import { Parser, ReadEntry } from 'tar';
import { StratumError } from '@stratum/contracts';

// Checking an uploaded tar while it streams into the blob store: build contexts
// (POST /api/v1/builds) and root filesystems (POST /api/v1/images/import) alike.

/** The errors an upload answers with, by what went wrong. */
export interface TarUploadErrors {
  /** The body is empty. */
  readonly empty: () => StratumError;
  /** The body is not a tar archive (`why`: the parser's reason). */
  readonly invalid: (why: string) => StratumError;
  /** More than `limit` bytes. */
  readonly tooLarge: (limit: number) => StratumError;
  /** The source stream failed (default: its own error). */
  readonly source?: (err: Error) => Error;
  /** When set, a device node entry is refused with this error (a build context has no use for one). */
  readonly device?: (path: string) => StratumError;
}

/** What an uploaded tar contains, known once it has been read to its end. */
export interface TarSummary {
  readonly entries: number;
  /** Normalized (see {@link normalizeContextPath}) paths of the entries. */
  readonly paths: ReadonlySet<string>;
  /** Bytes that passed (as uploaded: compressed when the tar is). */
  readonly bytes: number;
}

/** What a context tar contains that the API checks before accepting a build. */
export type ContextSummary = TarSummary;

/** `./a/b`, `a/b/`, `/a/b` -> `a/b`: the form paths are compared in. */
export function normalizeContextPath(p: string): string {
  const n = posix.normalize(`/${p}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

/** Fails the stream (with `tooLarge(limit)`) as soon as more than `limit` bytes pass. */
export class ByteLimit extends Transform {
  bytes = 0;
  constructor(
    private readonly limit: number,
    private readonly tooLarge: (limit: number) => Error = CONTEXT_ERRORS.tooLarge,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      done(this.tooLarge(this.limit));
      return;
    }
    done(null, chunk);
  }
}

/**
 * Splits an upload into the bytes to store and a strict tar parse that checks, while the bytes
 * stream, that it is a tar (plain or gzip) and lists its paths. Nothing is buffered whole.
 * A body that is not a tar stops the stored stream at once (`bytes` is destroyed) and rejects
 * `summary`; callers prefer that error over the store's echo of it.
 */
export function inspectTar(
  source: Readable,
  limit: number,
  errors: TarUploadErrors,
): { bytes: Readable; summary: Promise<TarSummary>; counted: ByteLimit } {
  const counted = new ByteLimit(limit, (l) => errors.tooLarge(l));
  const bytes = new PassThrough();
  const paths = new Set<string>();
  let entries = 0;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      entries++;
      paths.add(normalizeContextPath(entry.path));
      if (errors.device !== undefined && (entry.type === 'CharacterDevice' || entry.type === 'BlockDevice')) {
        refuse(errors.device(entry.path));
      }
      entry.resume();
    },
  });
  let parserFailed = false;
  let refuse: (err: Error) => void = () => undefined;
  const summary = new Promise<TarSummary>((resolve, reject) => {
    let failed: Error | null = null;
    refuse = (err: Error): void => {
      if (failed === null) {
        failed = err;
        // Stop storing; the rest of the body still drains through `counted` (and its limit).
        parserFailed = true;
        bytes.destroy(failed);
        reject(failed);
      }
    };
    parser.on('error', (err: Error) => {
      refuse(counted.bytes === 0 ? errors.empty() : errors.invalid(err.message));
    });
    counted.on('error', (err: Error) => {
      failed ??= err;
      reject(err);
    });
    source.on('error', (err: Error) => {
      const mapped = errors.source?.(err) ?? err;
      failed ??= mapped;
      bytes.destroy(mapped);
      reject(mapped);
    });
    parser.on('close', () => {
      if (counted.bytes === 0 && counted.writableFinished) {
        reject(errors.empty());
      } else if (failed !== null) {
        reject(failed);
      } else if (entries === 0) {
        reject(errors.invalid('no entries'));
      } else {
        resolve({ entries, paths, bytes: counted.bytes });
      }
    });
  });
  // Avoid unhandled rejections when the caller awaits the store first and this one fails too.
  summary.catch(() => undefined);
  source.pipe(counted);
  counted.pipe(bytes);
  // The store reports errors through its own listener; this one only keeps a late destroy()
  // (after the store finished) from being an unhandled 'error' event.
  bytes.on('error', () => undefined);
  // Fed by hand, not piped: pipe() would detach the parser on its first error and it would
  // then never reach 'close'.
  counted.on('data', (chunk: Buffer) => {
    if (!parserFailed) {
      parser.write(chunk);
    }
  });
  counted.on('end', () => parser.end());
  counted.on('error', (err) => bytes.destroy(err));
  return { bytes, summary, counted };
}

const CONTEXT_ERRORS: TarUploadErrors = {
  empty: () =>
    new StratumError('CONTEXT_MISSING', 'the request has no build context: send a tar as the body'),
  invalid: (why) => new StratumError('CONTEXT_INVALID', `build context is not a valid tar archive: ${why}`),
  tooLarge: (limit) =>
    new StratumError('CONTEXT_TOO_LARGE', `build context is larger than the limit of ${limit} bytes`),
  device: (path) =>
    new StratumError(
      'CONTEXT_INVALID',
      `build context holds a device node (${path}); devices are not allowed`,
    ),
};

/** A build context upload: {@link inspectTar} with the build API's error codes. */
export function inspectContext(
  source: Readable,
  limit: number,
): { bytes: Readable; summary: Promise<ContextSummary>; counted: ByteLimit } {
  return inspectTar(source, limit, CONTEXT_ERRORS);
}
