// A minimal deterministic ustar/pax encoder for build contexts: regular files, directories,
// symlinks, hard links and fifos/devices (header only). Portable headers: numeric ids 0, no
// uname/gname, no atime/ctime, so the bytes depend only on the paths, modes, sizes, mtimes and
// contents. Names that do not fit ustar (or are not ASCII) get a pax `path` record.

const BLOCK = 512;
const MAX_OCTAL_11 = 0o77777777777;

export type TarType = 'file' | 'dir' | 'symlink' | 'link' | 'fifo' | 'char' | 'block';

const FLAG: Record<TarType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

export interface TarWriterHeader {
  readonly path: string;
  readonly type: TarType;
  readonly mode: number;
  readonly size: number;
  /** Whole seconds. */
  readonly mtime: number;
  readonly linkpath: string;
}

function isAscii(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\x01-\x7f]*$/.test(s);
}

function writeOctal(block: Buffer, off: number, len: number, value: number): void {
  block.write(`${value.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

/** [prefix, name] when `path` fits the ustar fields, else null. */
function splitUstar(path: string): [string, string] | null {
  if (!isAscii(path)) {
    return null;
  }
  if (path.length <= 100) {
    return ['', path];
  }
  // The split point is a '/' such that the prefix fits in 155 and the rest in 100.
  for (let i = path.length - 101; i < path.length && i <= 155; i++) {
    if (i > 0 && path[i] === '/') {
      const prefix = path.slice(0, i);
      const name = path.slice(i + 1);
      if (name.length > 0 && name.length <= 100) {
        return [prefix, name];
      }
    }
  }
  return null;
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) {
    len = String(len).length + bodyLen;
  }
  return Buffer.from(`${len}${body}`, 'utf8');
}

function block(fields: {
  name: string;
  prefix: string;
  flag: string;
  mode: number;
  size: number;
  mtime: number;
  linkname: string;
}): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(fields.name, 0, 100, 'latin1');
  writeOctal(b, 100, 8, fields.mode);
  writeOctal(b, 108, 8, 0);
  writeOctal(b, 116, 8, 0);
  writeOctal(b, 124, 12, fields.size);
  writeOctal(b, 136, 12, fields.mtime);
  b.write(fields.flag, 156, 1, 'latin1');
  b.write(fields.linkname, 157, 100, 'latin1');
  b.write('ustar\x0000', 257, 8, 'latin1');
  b.write(fields.prefix, 345, 155, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    sum += b[i];
  }
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

function sanitized(s: string): string {
  return Buffer.from(s, 'utf8')
    .subarray(0, 100)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '_');
}

/** The header block(s) of one entry: a pax header first when a field does not fit ustar. */
export function tarHeader(h: TarWriterHeader): Buffer {
  const records: Buffer[] = [];
  const split = splitUstar(h.path);
  let prefix = '';
  let name: string;
  if (split !== null) {
    [prefix, name] = split;
  } else {
    records.push(paxRecord('path', h.path));
    name = sanitized(h.path);
  }
  let linkname = h.linkpath;
  if (linkname.length > 100 || !isAscii(linkname)) {
    records.push(paxRecord('linkpath', linkname));
    linkname = '';
  }
  let size = h.size;
  if (size > MAX_OCTAL_11) {
    records.push(paxRecord('size', String(size)));
    size = 0;
  }
  const main = block({
    name,
    prefix,
    flag: FLAG[h.type],
    mode: h.mode & 0o7777,
    size,
    mtime: Math.min(Math.max(0, Math.floor(h.mtime)), MAX_OCTAL_11),
    linkname,
  });
  if (records.length === 0) {
    return main;
  }
  const body = Buffer.concat(records);
  const base = h.path.replace(/\/+$/, '').split('/').pop() ?? '';
  const pax = block({
    name: sanitized(`PaxHeaders.0/${base}`),
    prefix: '',
    flag: 'x',
    mode: 0o644,
    size: body.length,
    mtime: 0,
    linkname: '',
  });
  return Buffer.concat([pax, body, Buffer.alloc(tarPadding(body.length)), main]);
}

/** Zero bytes needed after `size` bytes of content to reach a block boundary. */
export function tarPadding(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * BLOCK);
