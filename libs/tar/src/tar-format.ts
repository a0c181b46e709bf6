// Low-level tar (POSIX ustar + pax, GNU long names on read) encoding.
// Spec: https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
// We write our own codec instead of node-tar's because we need pax xattr records
// (SCHILY.xattr.*, binary values) in both directions and byte-exact, deterministic output.
// Layers (snapshots), build contexts (the CLI) and every tar we read go through this one codec.
import { TarError } from './tar-error';

export const BLOCK = 512;

/** Tar entry types Stratum reads and writes. */
export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

const TYPE_TO_FLAG: Record<TarEntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

/** Metadata of one tar entry (after pax / GNU long-name records are merged in). */
export interface TarHeader {
  path: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch, possibly fractional when it came from a pax record. */
  mtime: number;
  linkpath: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.<name>` pax records. */
  xattrs: Map<string, Buffer>;
}

/** A header as decoded from one 512-byte block, before pax/GNU overrides. */
export interface RawHeader {
  name: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) {
    if (block[i] !== 0) {
      return false;
    }
  }
  return true;
}

function readString(block: Buffer, off: number, len: number): string {
  const field = block.subarray(off, off + len);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? len : nul).toString('utf8');
}

function readNumber(block: Buffer, off: number, len: number): number {
  const field = block.subarray(off, off + len);
  if ((field[0] & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement with the top bit as a marker.
    if (field[0] === 0xff) {
      throw new TarError('TAR_INVALID', 'negative base-256 number in tar header');
    }
    let value = field[0] & 0x7f;
    for (let i = 1; i < len; i++) {
      value = value * 256 + field[i];
    }
    return value;
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') {
    return 0;
  }
  if (!/^[0-7]+$/.test(text)) {
    throw new TarError('TAR_INVALID', `bad octal field ${JSON.stringify(text)} in tar header`);
  }
  return parseInt(text, 8);
}

/** Decodes one header block; throws TAR_INVALID on a bad checksum. */
export function decodeHeader(block: Buffer): RawHeader {
  const stored = readNumber(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarError('TAR_INVALID', 'tar header checksum mismatch');
  }
  const magic = block.subarray(257, 263).toString('latin1');
  let name = readString(block, 0, 100);
  if (magic === 'ustar\0') {
    const prefix = readString(block, 345, 155);
    if (prefix !== '') {
      name = `${prefix}/${name}`;
    }
  }
  return {
    name,
    typeflag: String.fromCharCode(block[156] === 0 ? 0x30 : block[156]),
    mode: readNumber(block, 100, 8),
    uid: readNumber(block, 108, 8),
    gid: readNumber(block, 116, 8),
    size: readNumber(block, 124, 12),
    mtime: readNumber(block, 136, 12),
    linkname: readString(block, 157, 100),
    devmajor: readNumber(block, 329, 8),
    devminor: readNumber(block, 337, 8),
  };
}

/** Maps a typeflag to our entry type, or undefined for types we do not support. */
export function entryTypeOf(typeflag: string): TarEntryType | undefined {
  switch (typeflag) {
    case '0':
    case '7': // contiguous file: a regular file everywhere that matters
      return 'file';
    case '1':
      return 'link';
    case '2':
      return 'symlink';
    case '3':
      return 'char';
    case '4':
      return 'block';
    case '5':
      return 'dir';
    case '6':
      return 'fifo';
    default:
      return undefined;
  }
}

/** Pax extended header records; values are raw bytes (xattr values may be binary). */
export function parsePax(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) {
      break; // padding
    }
    const space = body.indexOf(0x20, pos);
    if (space === -1) {
      throw new TarError('TAR_INVALID', 'malformed pax record');
    }
    const len = Number(body.subarray(pos, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > body.length) {
      throw new TarError('TAR_INVALID', 'malformed pax record length');
    }
    const record = body.subarray(space + 1, pos + len);
    if (record[record.length - 1] !== 0x0a) {
      throw new TarError('TAR_INVALID', 'pax record does not end in a newline');
    }
    const eq = record.indexOf(0x3d);
    if (eq === -1) {
      throw new TarError('TAR_INVALID', 'pax record without "="');
    }
    out.set(record.subarray(0, eq).toString('utf8'), Buffer.from(record.subarray(eq + 1, record.length - 1)));
    pos += len;
  }
  return out;
}

function paxRecord(key: string, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const rest = Buffer.byteLength(key) + v.length + 3; // ' ' '=' '\n'
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) {
    len = rest + String(len).length;
  }
  return Buffer.concat([Buffer.from(`${len} ${key}=`, 'utf8'), v, Buffer.from('\n')]);
}

function writeString(block: Buffer, off: number, len: number, value: string): void {
  Buffer.from(value, 'utf8').copy(block, off, 0, len);
}

function writeOctal(block: Buffer, off: number, len: number, value: number): void {
  const text = Math.floor(value)
    .toString(8)
    .padStart(len - 1, '0');
  block.write(`${text}\0`, off, len, 'latin1');
}

const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

function isAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

/** Splits a path into ustar prefix/name, or returns undefined when it does not fit. */
function splitUstar(path: string): [string, string] | undefined {
  if (!isAscii(path)) {
    return undefined;
  }
  if (path.length <= 100) {
    return ['', path];
  }
  // The first '/' (not a leading one: an empty prefix would drop it) that leaves both fitting.
  for (let i = path.indexOf('/', 1); i !== -1; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (prefix.length <= 155 && name.length <= 100 && name !== '') {
      return [prefix, name];
    }
  }
  return undefined;
}

function headerBlock(h: RawHeader & { prefix: string }): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, 0, 100, h.name);
  writeOctal(block, 100, 8, h.mode);
  writeOctal(block, 108, 8, h.uid);
  writeOctal(block, 116, 8, h.gid);
  writeOctal(block, 124, 12, h.size);
  writeOctal(block, 136, 12, h.mtime);
  block.write(h.typeflag, 156, 1, 'latin1');
  writeString(block, 157, 100, h.linkname);
  block.write('ustar\x0000', 257, 8, 'latin1');
  // uname/gname stay empty: numeric ids only, so output does not depend on /etc/passwd.
  writeOctal(block, 329, 8, h.devmajor);
  writeOctal(block, 337, 8, h.devminor);
  writeString(block, 345, 155, h.prefix);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    sum += block[i];
  }
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

/**
 * What {@link encodeHeader} needs: a {@link TarHeader} whose owner, device numbers and xattrs
 * may be left out (0 and none: the portable form build contexts use).
 */
export type EncodableHeader = Omit<TarHeader, 'uid' | 'gid' | 'devmajor' | 'devminor' | 'xattrs'> &
  Partial<Pick<TarHeader, 'uid' | 'gid' | 'devmajor' | 'devminor' | 'xattrs'>>;

/**
 * Encodes the header (plus a pax header when needed) of one entry. Deterministic: the
 * same input always gives the same bytes. `mtime` is truncated to whole seconds; uname and
 * gname stay empty (numeric ids only).
 */
export function encodeHeader(h: EncodableHeader): Buffer {
  const records: Buffer[] = [];
  const split = splitUstar(h.path);
  let prefix = '';
  let name: string;
  if (split) {
    [prefix, name] = split;
  } else {
    records.push(paxRecord('path', h.path));
    name = Buffer.from(h.path, 'utf8')
      .subarray(0, 100)
      .toString('latin1')
      .replace(/[^\x20-\x7e]/g, '_');
  }
  let linkname = h.linkpath;
  if (Buffer.byteLength(linkname) > 100 || !isAscii(linkname)) {
    records.push(paxRecord('linkpath', linkname));
    linkname = '';
  }
  let size = h.size;
  if (size > MAX_OCTAL_11) {
    records.push(paxRecord('size', String(size)));
    size = 0;
  }
  let uid = h.uid ?? 0;
  if (uid > MAX_OCTAL_7) {
    records.push(paxRecord('uid', String(uid)));
    uid = 0;
  }
  let gid = h.gid ?? 0;
  if (gid > MAX_OCTAL_7) {
    records.push(paxRecord('gid', String(gid)));
    gid = 0;
  }
  const mtime = Math.max(0, Math.floor(h.mtime));
  const xattrs = h.xattrs ?? new Map<string, Buffer>();
  for (const key of [...xattrs.keys()].sort()) {
    records.push(paxRecord(`SCHILY.xattr.${key}`, xattrs.get(key) ?? Buffer.alloc(0)));
  }
  const main = headerBlock({
    name,
    prefix,
    typeflag: TYPE_TO_FLAG[h.type],
    mode: h.mode & 0o7777,
    uid,
    gid,
    size,
    mtime: Math.min(mtime, MAX_OCTAL_11),
    linkname,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (records.length === 0) {
    return main;
  }
  const body = Buffer.concat(records);
  const base = h.path.replace(/\/+$/, '').split('/').pop() ?? '';
  const paxName = `PaxHeaders.0/${base}`;
  const pax = headerBlock({
    name: Buffer.from(paxName, 'utf8')
      .subarray(0, 100)
      .toString('latin1')
      .replace(/[^\x20-\x7e]/g, '_'),
    prefix: '',
    typeflag: 'x',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: 0,
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([pax, body, Buffer.alloc(padding(body.length)), main]);
}

/** Zero bytes needed after `size` bytes of content to reach a block boundary. */
export function padding(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}

/** The end-of-archive marker: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
