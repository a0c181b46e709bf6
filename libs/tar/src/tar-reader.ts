import type { Hash } from 'node:crypto';
import { TarError } from './tar-error';
import {
  BLOCK,
  decodeHeader,
  entryTypeOf,
  isZeroBlock,
  padding,
  parsePax,
  type RawHeader,
  type TarHeader,
} from './tar-format';

/** Largest pax / GNU long-name body we accept: metadata, not content. */
const MAX_META_SIZE = 1024 * 1024;

/** Options of {@link ByteReader}. */
export interface ByteReaderOptions {
  /** Fail with TAR_TOO_LARGE as soon as more than this many bytes have been read. */
  maxBytes?: number;
  /**
   * Fed every byte pulled, tar padding after the end marker included: for a layer, a sha256
   * gives the diffID. Without one nothing is hashed (the API's upload check needs no digest).
   */
  hash?: Hash;
}

/**
 * Pulls bytes from an async iterable on demand, counting (and, given a hash, hashing)
 * everything it pulls, so the digest covers the whole stream.
 */
export class ByteReader {
  readonly hash: Hash | undefined;
  total = 0;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private readonly iter: AsyncIterator<unknown>;
  private readonly maxBytes: number;

  constructor(source: AsyncIterable<unknown>, options: ByteReaderOptions = {}) {
    this.iter = source[Symbol.asyncIterator]();
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.hash = options.hash;
  }

  private async fill(): Promise<boolean> {
    if (this.ended) {
      return false;
    }
    const next = await this.iter.next();
    if (next.done === true) {
      this.ended = true;
      return false;
    }
    const value: unknown = next.value;
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
    this.hash?.update(chunk);
    this.total += chunk.length;
    if (this.total > this.maxBytes) {
      throw new TarError('TAR_TOO_LARGE', `the archive is larger than the limit of ${this.maxBytes} bytes`);
    }
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) {
        this.chunks.shift();
      } else {
        this.chunks[0] = first.subarray(n);
      }
      this.buffered -= n;
      return out;
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = this.chunks[0];
      if (c.length <= need) {
        parts.push(c);
        this.chunks.shift();
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        this.chunks[0] = c.subarray(need);
        need = 0;
      }
    }
    this.buffered -= n;
    return Buffer.concat(parts, n);
  }

  /** Exactly n bytes, or null at a clean end of stream; throws if the stream ends midway. */
  async readExact(n: number): Promise<Buffer | null> {
    while (this.buffered < n) {
      if (!(await this.fill())) {
        if (this.buffered === 0) {
          return null;
        }
        throw new TarError('TAR_INVALID', 'unexpected end of tar stream');
      }
    }
    return this.take(n);
  }

  /** Up to max bytes (at least one), or null at end of stream. */
  async readSome(max: number): Promise<Buffer | null> {
    while (this.buffered === 0) {
      if (!(await this.fill())) {
        return null;
      }
    }
    return this.take(Math.min(max, this.chunks[0].length));
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const b = await this.readSome(left);
      if (b === null) {
        throw new TarError('TAR_INVALID', 'unexpected end of tar stream');
      }
      left -= b.length;
    }
  }

  /** Reads (and hashes) whatever is left. */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.fill()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }
}

/** One tar entry; `body()` streams its content and must be consumed before the next entry. */
export interface TarEntry extends TarHeader {
  body(): AsyncIterable<Buffer>;
}

function paxString(pax: Map<string, Buffer>, key: string): string | undefined {
  return pax.get(key)?.toString('utf8');
}

function paxNumber(pax: Map<string, Buffer>, key: string, entry: string): number | undefined {
  const s = paxString(pax, key);
  if (s === undefined) {
    return undefined;
  }
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) {
    throw new TarError('TAR_INVALID', `bad pax ${key}=${JSON.stringify(s)}`, entry);
  }
  return n;
}

function merge(raw: RawHeader, pax: Map<string, Buffer>, longName?: string, longLink?: string): TarHeader {
  const path = paxString(pax, 'path') ?? longName ?? raw.name;
  const type = entryTypeOf(raw.typeflag);
  if (type === undefined) {
    throw new TarError(
      'TAR_UNSUPPORTED_ENTRY',
      `unsupported tar entry type ${JSON.stringify(raw.typeflag)}`,
      path,
    );
  }
  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of pax) {
    if (k.startsWith('SCHILY.xattr.')) {
      xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    }
  }
  return {
    path,
    type,
    mode: raw.mode,
    uid: paxNumber(pax, 'uid', path) ?? raw.uid,
    gid: paxNumber(pax, 'gid', path) ?? raw.gid,
    size: paxNumber(pax, 'size', path) ?? raw.size,
    mtime: paxNumber(pax, 'mtime', path) ?? raw.mtime,
    linkpath: paxString(pax, 'linkpath') ?? longLink ?? raw.linkname,
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    xattrs,
  };
}

/**
 * Streams the entries of an (uncompressed) tar. Handles ustar, pax (local and global
 * headers) and GNU long names/links. Entry bodies are never buffered whole.
 */
export async function* readTar(reader: ByteReader): AsyncGenerator<TarEntry> {
  let globalPax = new Map<string, Buffer>();
  let localPax = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const block = await reader.readExact(BLOCK);
    if (block === null) {
      break; // no end marker: accept, as GNU tar and Go do
    }
    if (isZeroBlock(block)) {
      break;
    }
    const raw = decodeHeader(block);
    const meta = async (): Promise<Buffer> => {
      if (raw.size > MAX_META_SIZE) {
        throw new TarError('TAR_INVALID', `tar metadata record of ${raw.size} bytes is too large`);
      }
      const body = await reader.readExact(raw.size + padding(raw.size));
      if (body === null) {
        throw new TarError('TAR_INVALID', 'unexpected end of tar stream');
      }
      return body.subarray(0, raw.size);
    };
    switch (raw.typeflag) {
      case 'x':
        localPax = parsePax(await meta());
        continue;
      case 'g':
        globalPax = new Map([...globalPax, ...parsePax(await meta())]);
        continue;
      case 'L':
        longName = (await meta()).toString('utf8').replace(/\0.*$/s, '');
        continue;
      case 'K':
        longLink = (await meta()).toString('utf8').replace(/\0.*$/s, '');
        continue;
      default:
        break;
    }
    const header = merge(raw, new Map([...globalPax, ...localPax]), longName, longLink);
    localPax = new Map();
    longName = undefined;
    longLink = undefined;
    // Only regular files carry content; a size on anything else is skipped as data.
    const size = header.size;
    let remaining = size;
    const entry: TarEntry = {
      ...header,
      size: header.type === 'file' ? size : 0,
      async *body(): AsyncIterable<Buffer> {
        if (header.type !== 'file') {
          return;
        }
        while (remaining > 0) {
          const chunk = await reader.readSome(Math.min(remaining, 1024 * 1024));
          if (chunk === null) {
            throw new TarError('TAR_INVALID', 'unexpected end of tar stream', header.path);
          }
          remaining -= chunk.length;
          yield chunk;
        }
      },
    };
    yield entry;
    await reader.skip(remaining + padding(size));
  }
  await reader.drain();
}
