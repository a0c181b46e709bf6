import { PassThrough, Readable, pipeline, type Duplex } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { DigestStream } from '@stratum/oci';
import { hasTool, spawnFilter } from './host-tools';
import { LayerError } from './layer-error';

/** Layer compression. `none` is a plain tar. */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** OCI layer media types. https://github.com/opencontainers/image-spec/blob/main/layer.md */
export const LAYER_MEDIA_TYPES = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
} as const satisfies Record<LayerCompression, string>;

/** Digests and sizes of a produced layer blob. */
export interface LayerDigests {
  /** `sha256:` of the uncompressed tar (goes into the config's rootfs.diff_ids). */
  diffId: string;
  /** `sha256:` of the blob bytes as streamed (goes into the manifest). */
  digest: string;
  /** Bytes of the blob as streamed. */
  size: number;
  /** Bytes of the uncompressed tar. */
  uncompressedSize: number;
  mediaType: string;
}

/** A layer blob being produced: pipe `stream` to storage; `done` settles once it is fully read. */
export interface LayerStream {
  stream: Readable;
  done: Promise<LayerDigests>;
}

/** Compression options shared by snapshot, tar creation and compressLayer. */
export interface CompressionOptions {
  /** Default `gzip`. */
  compression?: LayerCompression;
  /** gzip 1-9 (default 6; igzip 0-3, default 1), zstd 1-19 (default 3). */
  level?: number;
  /**
   * gzip implementation. `auto` (default) uses ISA-L's `igzip -1 -n` when installed and no
   * level is asked for, else `pigz -n` when installed (both cores), else node's zlib. Each is
   * deterministic, but they produce different bytes, so blob digests differ between hosts with
   * different tools; diffIDs do not. igzip -1 compresses about as well as gzip -6 at 5-10x the
   * speed, and passes incompressible data through at disk speed (gzip -6 and pigz do not).
   */
  gzipImplementation?: 'auto' | 'igzip' | 'pigz' | 'zlib';
  /**
   * Scheduling priority (nice, -20..19) of a compressor that runs as its own process (igzip,
   * pigz, zstd). The pipelined layer export compresses beside the build's next step at 10, so
   * the step (its container, a COPY in the worker) gets the CPU first. Default: ours.
   */
  niceness?: number;
}

/**
 * Asks once which gzip tools the `auto` choice may use (igzip, else pigz), so that a fresh
 * process's first big layer does not: each answer costs a fork and exec of this process (~8 ms
 * of a worker's main thread, which fell inside its first build's first RUN) and is kept for
 * the life of the process. A worker calls it at start-up.
 */
export async function probeCompressors(): Promise<void> {
  await Promise.all([hasTool('igzip'), hasTool('pigz')]);
}

async function compressor(options: CompressionOptions): Promise<{ duplex: Duplex; exited: Promise<void> }> {
  const compression = options.compression ?? 'gzip';
  switch (compression) {
    case 'none':
      return { duplex: new PassThrough(), exited: Promise.resolve() };
    case 'gzip': {
      const impl = options.gzipImplementation ?? 'auto';
      if (impl === 'igzip' || (impl === 'auto' && options.level === undefined && (await hasTool('igzip')))) {
        // -n: no name/mtime in the header. One thread: same bytes whatever the core count.
        return spawnFilter('igzip', ['-n', '-c', `-${options.level ?? 1}`], options);
      }
      const level = options.level ?? 6;
      if (impl === 'pigz' || (impl === 'auto' && (await hasTool('pigz')))) {
        // -n: no name/mtime in the gzip header, so output depends on the input only.
        return spawnFilter('pigz', ['-n', '-c', `-${level}`], options);
      }
      return { duplex: createGzip({ level }), exited: Promise.resolve() };
    }
    case 'zstd': {
      const level = options.level ?? 3;
      // zstd's multithreaded output does not depend on the thread count (-T0 = all cores).
      return spawnFilter('zstd', ['-T0', `-${level}`, '-c', '-q', '--no-progress'], options);
    }
    default: {
      const never: never = compression;
      throw new LayerError('LAYER_INVALID_ARGUMENT', `unknown compression ${String(never)}`);
    }
  }
}

/**
 * A layer whose whole tar is at most this many bytes is gzipped in-process (zlib -6) under the
 * `auto` choice: starting igzip or pigz (a fork and exec, 5-20 ms on a busy 2-core host) costs
 * more than compressing a few KiB, and most RUN steps change only a few KiB. The rule depends on
 * the tar's bytes only, so a given layer still always gets the same blob.
 */
export const SMALL_LAYER_BYTES = 256 * 1024;

/**
 * The first chunks of `tar`, up to `limit` bytes or its end, and a stream of all of it again
 * (the peeked chunks, then the rest, with back-pressure).
 */
async function peek(tar: Readable, limit: number): Promise<{ ended: boolean; whole: Readable }> {
  const it = tar[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size <= limit) {
    const r = await it.next();
    if (r.done === true) {
      ended = true;
      break;
    }
    head.push(r.value);
    size += r.value.length;
  }
  async function* all(): AsyncGenerator<Buffer> {
    let finished = ended;
    try {
      yield* head;
      for (let r = finished ? null : await it.next(); r !== null && r.done !== true; r = await it.next()) {
        yield r.value;
      }
      finished = true;
    } finally {
      // torn down early (a failed pipeline): the source is closed too
      if (!finished) {
        await it.return?.();
      }
    }
  }
  return { ended, whole: Readable.from(all(), { objectMode: false }) };
}

/**
 * Compresses a plain tar stream while hashing it, in one pass: `diffId` over the tar bytes,
 * `digest` over the compressed bytes. Use it to import an existing rootfs tar as a layer.
 */
export function compressLayer(input: Readable, options: CompressionOptions = {}): LayerStream {
  const compression = options.compression ?? 'gzip';
  const out = new PassThrough();
  // The source is read ahead (peek) before a consumer may have attached to `out` (a blob store
  // that first makes its temp file): a failure then must not be an unhandled 'error' event.
  // It is not lost: `done` rejects with it and `out` stays destroyed with it (stream.errored).
  out.on('error', () => undefined);
  const done = (async (): Promise<LayerDigests> => {
    let comp: { duplex: Duplex; exited: Promise<void> };
    let tar = input;
    try {
      const auto =
        compression === 'gzip' &&
        (options.gzipImplementation ?? 'auto') === 'auto' &&
        options.level === undefined;
      const peeked = auto ? await peek(input, SMALL_LAYER_BYTES) : null;
      if (peeked !== null) {
        tar = peeked.whole;
      }
      comp =
        peeked?.ended === true
          ? { duplex: createGzip({ level: 6 }), exited: Promise.resolve() }
          : await compressor(options);
    } catch (e) {
      tar.destroy();
      input.destroy();
      out.destroy(e as Error);
      throw e;
    }
    const tapIn = new DigestStream();
    const tapOut = new DigestStream();
    await Promise.all([
      new Promise<void>((resolve, reject) => {
        pipeline(tar, tapIn, comp.duplex, tapOut, out, (err) => (err ? reject(err) : resolve()));
      }),
      comp.exited,
    ]).catch((e: unknown) => {
      out.destroy(e as Error);
      throw e;
    });
    const plain = tapIn.result();
    const blob = tapOut.result();
    return {
      diffId: plain.digest,
      digest: blob.digest,
      size: blob.size,
      uncompressedSize: plain.size,
      mediaType: LAYER_MEDIA_TYPES[compression],
    };
  })();
  done.catch(() => undefined); // the caller sees the error through done and the stream
  return { stream: out, done };
}

/** Compression detected from a layer's first bytes. */
export type DetectedCompression = 'gzip' | 'zstd' | 'none';

export function detectCompression(head: Buffer): DetectedCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    return 'gzip';
  }
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) {
    return 'zstd';
  }
  return 'none';
}

/**
 * Sniffs the compression of `source` and returns the uncompressed bytes. Errors of the
 * decompressor (including a failing zstd process) surface while iterating the result.
 */
export async function decompressed(source: Readable): Promise<{
  stream: AsyncIterable<unknown>;
  compression: DetectedCompression;
  close: () => void;
  exited: Promise<void>;
}> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const head: Buffer[] = [];
  let headLen = 0;
  let ended = false;
  while (headLen < 4) {
    const next = await it.next();
    if (next.done === true) {
      ended = true;
      break;
    }
    const value: unknown = next.value;
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
    head.push(chunk);
    headLen += chunk.length;
  }
  const first = Buffer.concat(head);
  const compression = detectCompression(first);
  const replay = Readable.from(
    (async function* (): AsyncGenerator<Buffer> {
      yield first;
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
  const close = (): void => {
    replay.destroy();
    source.destroy();
  };
  switch (compression) {
    case 'none':
      return { stream: replay, compression, close, exited: Promise.resolve() };
    case 'gzip': {
      const gunzip = createGunzip();
      pipeline(replay, gunzip, () => undefined);
      return {
        stream: gunzip,
        compression,
        close: () => {
          close();
          gunzip.destroy();
        },
        exited: Promise.resolve(),
      };
    }
    case 'zstd': {
      const proc = spawnFilter('zstd', ['-d', '-c', '-q']);
      pipeline(replay, proc.duplex, () => undefined);
      return {
        stream: proc.duplex,
        compression,
        close: () => {
          close();
          proc.duplex.destroy();
          proc.child.kill();
        },
        exited: proc.exited,
      };
    }
    default: {
      const never: never = compression;
      throw new LayerError('LAYER_INVALID_ARGUMENT', `unknown compression ${String(never)}`);
    }
  }
}
