import { posix } from 'node:path';
import { PassThrough, Readable, Transform, TransformCallback } from 'node:stream';
import { Parser, ReadEntry } from 'tar';
import { StratumError } from '@stratum/contracts';

/** What a context tar contains that the API checks before accepting a build. */
export interface ContextSummary {
  readonly entries: number;
  readonly paths: ReadonlySet<string>;
}

/** `./a/b`, `a/b/`, `/a/b` -> `a/b`: the form paths are compared in. */
export function normalizeContextPath(p: string): string {
  const n = posix.normalize(`/${p}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return n === '.' ? '' : n;
}

/** Fails the stream with CONTEXT_TOO_LARGE as soon as more than `limit` bytes pass. */
export class ByteLimit extends Transform {
  bytes = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      done(
        new StratumError(
          'CONTEXT_TOO_LARGE',
          `build context is larger than the limit of ${this.limit} bytes`,
        ),
      );
      return;
    }
    done(null, chunk);
  }
}

/**
 * Splits an uploaded context into the bytes to store and a tar parse that checks, while the
 * bytes stream, that it is a tar (plain or gzip) and lists its paths. Nothing is buffered whole.
 */
export function inspectContext(
  source: Readable,
  limit: number,
): { bytes: Readable; summary: Promise<ContextSummary>; counted: ByteLimit } {
  const counted = new ByteLimit(limit);
  const bytes = new PassThrough();
  const paths = new Set<string>();
  let entries = 0;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      entries++;
      paths.add(normalizeContextPath(entry.path));
      entry.resume();
    },
  });
  let parserFailed = false;
  const summary = new Promise<ContextSummary>((resolve, reject) => {
    let failed: Error | null = null;
    parser.on('error', (err: Error) => {
      if (failed === null) {
        failed =
          counted.bytes === 0
            ? new StratumError('CONTEXT_MISSING', 'the request has no build context: send a tar as the body')
            : new StratumError('CONTEXT_INVALID', `build context is not a valid tar archive: ${err.message}`);
        // Stop storing; the rest of the body still drains through `counted` (and its limit).
        parserFailed = true;
        bytes.destroy(failed);
        reject(failed);
      }
    });
    counted.on('error', (err: Error) => {
      failed ??= err;
      reject(err);
    });
    source.on('error', (err) => reject(err));
    parser.on('close', () => {
      if (counted.bytes === 0 && counted.writableFinished) {
        reject(
          new StratumError('CONTEXT_MISSING', 'the request has no build context: send a tar as the body'),
        );
      } else if (failed !== null) {
        reject(failed);
      } else if (entries === 0) {
        reject(new StratumError('CONTEXT_INVALID', 'build context is not a valid tar archive: no entries'));
      } else {
        resolve({ entries, paths });
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
