import { PassThrough, pipeline, Readable, Transform, TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, ReadEntry } from 'tar';
import { StratumError } from '@stratum/contracts';
import { detectCompression } from '@stratum/layers';

/** What the upload held, known once the tar has been read to its end. */
export interface RootfsSummary {
  readonly entries: number;
  /** Bytes of the uncompressed tar. */
  readonly bytes: number;
}

class ByteLimit extends Transform {
  bytes = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      done(new StratumError('BLOB_TOO_LARGE', `the root filesystem tar is larger than ${this.limit} bytes`));
      return;
    }
    done(null, chunk);
  }
}

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
 * gzip from the first bytes and inflates it, caps the uncompressed size, and parses the tar on
 * the way (strict) so a body that is not a tar fails the import with LAYER_INVALID instead of
 * becoming a layer. Nothing is buffered beyond one chunk.
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
    throw new StratumError('BAD_REQUEST', 'the request has no body: send the root filesystem as a tar');
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
  const limited = new ByteLimit(limit);
  const tar = new PassThrough();
  let entries = 0;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      entries++;
      entry.resume();
    },
  });
  const summary = new Promise<RootfsSummary>((resolve, reject) => {
    let failed: Error | null = null;
    const fail = (err: Error): void => {
      failed ??= err;
      tar.destroy(failed);
      reject(failed);
    };
    plain.on('error', (err: Error) =>
      fail(new StratumError('LAYER_INVALID', `the body is not a valid gzip stream: ${err.message}`)),
    );
    limited.on('error', fail);
    parser.on('error', (err: Error) =>
      fail(new StratumError('LAYER_INVALID', `the body is not a valid tar archive: ${err.message}`)),
    );
    parser.on('close', () => {
      if (failed !== null) {
        return;
      }
      if (entries === 0) {
        fail(new StratumError('LAYER_INVALID', 'the body is not a valid tar archive: no entries'));
        return;
      }
      resolve({ entries, bytes: limited.bytes });
    });
  });
  summary.catch(() => undefined);
  plain.pipe(limited);
  limited.pipe(tar);
  limited.pipe(parser);
  return { tar, summary };
}
