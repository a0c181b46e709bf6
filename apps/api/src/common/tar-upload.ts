import { posix } from 'node:path';
import { PassThrough, Readable, Transform, TransformCallback, Writable } from 'node:stream';
import { StratumError } from '@stratum/contracts';
import { decompressed } from '@stratum/layers';
import {
  ArchiveRules,
  ByteReader,
  isDeviceEntry,
  readTar,
  TarError,
  type ArchiveRulesOptions,
} from '@stratum/tar';

// Checking an uploaded tar while it streams into the blob store: build contexts
// (POST /api/v1/builds) and root filesystems (POST /api/v1/images/import) alike.

/** The errors an upload answers with, by what went wrong. */
export interface TarUploadErrors {
  /** The body is empty. */
  readonly empty: () => StratumError;
  /** The body is not a tar archive (`why`: the reader's reason). */
  readonly invalid: (why: string) => StratumError;
  /**
   * An entry the archive rules refuse (`why` names it): a path or link leading out, a link to
   * nothing (default: `invalid(why)`).
   */
  readonly entry?: (why: string) => StratumError;
  /** More than `limit` bytes. */
  readonly tooLarge: (limit: number) => StratumError;
  /** More than `limit` entries (default: `tooLarge`-like text through `invalid`). */
  readonly tooManyEntries?: (limit: number) => StratumError;
  /** The source stream failed (default: its own error). */
  readonly source?: (err: Error) => Error;
  /** When set, a device node entry is refused with this error (a build context has no use for one). */
  readonly device?: (path: string) => StratumError;
}

/** What an uploaded tar contains, known once it has been read to its end. */
export interface TarSummary {
  readonly entries: number;
  /**
   * Normalized (see {@link normalizeContextPath}) paths of the entries: all of them, or only
   * those {@link InspectOptions.keepPath} keeps.
   */
  readonly paths: ReadonlySet<string>;
  /** Bytes that passed (as uploaded: compressed when the tar is). */
  readonly bytes: number;
}

/** What a context tar contains that the API checks before accepting a build. */
export type ContextSummary = TarSummary;

/** Options of {@link inspectTar}. */
export interface InspectOptions extends Pick<ArchiveRulesOptions, 'kind'> {
  /** Refuse the tar at the entry after this many (`errors.tooManyEntries`). */
  readonly maxEntries?: number;
  /**
   * Which paths the summary lists (default: all). A build needs to know of one path, the
   * Dockerfile: listing them all held every name of a 1,000,000-entry context in memory.
   */
  readonly keepPath?: (path: string) => boolean;
}

/** `./a/b`, `a/b/`, `/a/b` -> `a/b`: the form paths are compared in (as `cleanEntryPath` of @stratum/tar cleans entry names). */
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

/** Resumes `source` once every writable it was paused for has drained (or closed). */
class Backpressure {
  private waiting = 0;
  constructor(private readonly source: Readable) {}

  /** Writes `chunk` to `to`; when `to` is full, pauses the source until `to` drains. */
  write(to: Writable, chunk: Buffer): void {
    if (to.destroyed || to.writableEnded || to.write(chunk)) {
      return;
    }
    this.waiting++;
    this.source.pause();
    const go = (): void => {
      to.off('drain', go);
      to.off('close', go);
      if (--this.waiting === 0) {
        this.source.resume();
      }
    };
    to.on('drain', go);
    to.on('close', go);
  }
}

function isZlibError(err: unknown): err is Error {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('Z_');
}

/**
 * Splits an upload into the bytes to store and a check, while the bytes stream, that it is a
 * tar (plain, gzip or zstd) the worker will extract: read by @stratum/tar's reader (the one the
 * worker extracts with) and checked entry by entry by its {@link ArchiveRules} (the ones the
 * worker's extractor applies: `..` escapes, symlinks and hard links leading out, hard links to
 * nothing, devices when `errors.device` is set), with the size limit on both the uploaded and
 * the uncompressed bytes. Lists its paths. Nothing is buffered whole: the upload waits for the
 * slower of the store and the check.
 * A body that is refused stops the stored stream at once (`bytes` is destroyed) and rejects
 * `summary`; callers prefer that error over the store's echo of it.
 */
export function inspectTar(
  source: Readable,
  limit: number,
  errors: TarUploadErrors,
  rules: InspectOptions = {},
): { bytes: Readable; summary: Promise<TarSummary>; counted: ByteLimit } {
  const maxEntries = rules.maxEntries ?? Infinity;
  const tooManyEntries = errors.tooManyEntries ?? ((n: number) => errors.invalid(`more than ${n} entries`));
  const counted = new ByteLimit(limit, (l) => errors.tooLarge(l));
  const bytes = new PassThrough();
  const parseIn = new PassThrough();
  const flow = new Backpressure(counted);
  let parserFailed = false;
  const check = async (): Promise<{ entries: number; paths: Set<string> }> => {
    const archive = new ArchiveRules({
      kind: rules.kind,
      devices: errors.device !== undefined ? 'reject' : 'allow',
    });
    const paths = new Set<string>();
    let entries = 0;
    const input = await decompressed(parseIn);
    try {
      for await (const entry of readTar(new ByteReader(input.stream, { maxBytes: limit }))) {
        // Counted before the archive rules remember the entry: their tree is bounded too.
        if (++entries > maxEntries) {
          throw tooManyEntries(maxEntries);
        }
        try {
          const path = archive.check(entry).join('/');
          if (rules.keepPath === undefined || rules.keepPath(path)) {
            paths.add(path);
          }
        } catch (err) {
          const refusedDevice = err instanceof TarError && err.code === 'TAR_UNSUPPORTED_ENTRY';
          if (errors.device !== undefined && refusedDevice && isDeviceEntry(entry)) {
            throw errors.device(entry.path);
          }
          throw err;
        }
      }
      await input.exited;
    } finally {
      input.close();
    }
    if (!counted.readableEnded) {
      await new Promise((resolve) => counted.once('end', resolve));
    }
    return { entries, paths };
  };
  const refusal = (err: unknown): Error => {
    if (counted.bytes === 0) {
      return errors.empty();
    }
    if (err instanceof StratumError) {
      return err;
    }
    if (err instanceof TarError) {
      if (err.code === 'TAR_TOO_LARGE') {
        return errors.tooLarge(limit);
      }
      return err.code === 'TAR_INVALID'
        ? errors.invalid(err.message)
        : (errors.entry ?? errors.invalid)(err.message);
    }
    if (isZlibError(err)) {
      return errors.invalid(`not valid gzip data: ${err.message}`);
    }
    return errors.invalid(err instanceof Error ? err.message : String(err));
  };
  const summary = new Promise<TarSummary>((resolve, reject) => {
    let failed: Error | null = null;
    const fail = (err: Error): void => {
      if (failed === null) {
        failed = err;
        // Stop storing and checking; the rest of the body still drains through `counted`
        // (and its limit).
        parserFailed = true;
        bytes.destroy(err);
        parseIn.destroy();
        reject(err);
      }
    };
    counted.on('error', fail);
    source.on('error', (err: Error) => fail(errors.source?.(err) ?? err));
    check().then(
      ({ entries, paths }) => {
        if (failed !== null) {
          reject(failed);
        } else if (counted.bytes === 0) {
          fail(errors.empty());
        } else if (entries === 0) {
          fail(errors.invalid('no entries'));
        } else {
          resolve({ entries, paths, bytes: counted.bytes });
        }
      },
      (err: unknown) => fail(refusal(err)),
    );
  });
  // Avoid unhandled rejections when the caller awaits the store first and this one fails too.
  summary.catch(() => undefined);
  source.pipe(counted);
  // The store reports errors through its own listener; this one only keeps a late destroy()
  // (after the store finished) from being an unhandled 'error' event.
  bytes.on('error', () => undefined);
  parseIn.on('error', () => undefined);
  // Fed by hand, not piped: a pipe would stop the body on the first refusal (the body is
  // drained to its end so the answer reaches the client), and would resume the body when one
  // side drains while the other is still full.
  counted.on('data', (chunk: Buffer) => {
    flow.write(bytes, chunk);
    if (!parserFailed) {
      flow.write(parseIn, chunk);
    }
  });
  counted.on('end', () => {
    bytes.end();
    parseIn.end();
  });
  return { bytes, summary, counted };
}

const CONTEXT_ERRORS: TarUploadErrors = {
  empty: () =>
    new StratumError('CONTEXT_MISSING', 'the request has no build context: send a tar as the body'),
  invalid: (why) => new StratumError('CONTEXT_INVALID', `build context is not a valid tar archive: ${why}`),
  entry: (why) =>
    new StratumError('CONTEXT_INVALID', `build context holds an entry that cannot be extracted: ${why}`),
  tooLarge: (limit) =>
    new StratumError('CONTEXT_TOO_LARGE', `build context is larger than the limit of ${limit} bytes`),
  tooManyEntries: (limit) =>
    new StratumError(
      'CONTEXT_TOO_LARGE',
      `build context holds more than ${limit} entries (the limit MAX_CONTEXT_ENTRIES)`,
    ),
  device: (path) =>
    new StratumError(
      'CONTEXT_INVALID',
      `build context holds a device node (${path}); devices are not allowed`,
    ),
};

/**
 * A build context upload: {@link inspectTar} with the build API's error codes, at most
 * `options.maxEntries` entries, listing only the paths `options.keepPath` keeps.
 */
export function inspectContext(
  source: Readable,
  limit: number,
  options: Omit<InspectOptions, 'kind'> = {},
): { bytes: Readable; summary: Promise<ContextSummary>; counted: ByteLimit } {
  // A context is a plain archive: `.wh.*` names are ordinary files, as the worker extracts them.
  return inspectTar(source, limit, CONTEXT_ERRORS, { ...options, kind: 'plain' });
}
