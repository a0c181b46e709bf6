// Test helpers for libs/layers integration tests (not part of the public surface).
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readlink, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { sha256Digest } from '@stratum/oci';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from '@stratum/tar';
import { BUSYBOX_FIXTURE } from '@stratum/testing';

export async function tempDir(prefix = 'stratum-layers-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface TreeOptions {
  /** Compare mtimes (whole seconds) of non-directories. Default true. */
  mtimes?: boolean;
  /** Compare directory mtimes. Default true. */
  dirMtimes?: boolean;
  /** Include user.* / security.* xattrs. Default true. */
  xattrs?: boolean;
}

function xattrsOf(path: string): string {
  try {
    const out = execFileSync(
      'getfattr',
      ['-h', '-d', '-m', '^(user|security)\\.', '-e', 'hex', '--absolute-names', '--', path],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    ).toString();
    return out
      .split('\n')
      .filter((l) => l.includes('='))
      .sort()
      .join(',');
  } catch {
    return '';
  }
}

/** A comparable description of every path under root (root itself excluded). */
export async function describeTree(root: string, options: TreeOptions = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const inodes = new Map<string, string>();
  async function walk(dir: string, rel: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const abs = join(dir, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(abs);
      let kind: string;
      if (st.isDirectory()) {
        kind = 'dir';
      } else if (st.isFile()) {
        const first = inodes.get(`${st.ino}`);
        if (st.nlink > 1 && first === undefined) {
          inodes.set(`${st.ino}`, r);
        }
        const hash = createHash('sha256')
          .update(await readFile(abs))
          .digest('hex')
          .slice(0, 16);
        kind = `file size=${st.size} sha=${hash} nlink=${st.nlink}${first !== undefined ? ` link=${first}` : ''}`;
      } else if (st.isSymbolicLink()) {
        kind = `symlink ->${await readlink(abs)}`;
      } else if (st.isCharacterDevice()) {
        kind = `char ${st.rdev}`;
      } else if (st.isBlockDevice()) {
        kind = `block ${st.rdev}`;
      } else if (st.isFIFO()) {
        kind = 'fifo';
      } else {
        kind = 'other';
      }
      const mode = st.isSymbolicLink() ? '' : ` mode=${(st.mode & 0o7777).toString(8)}`;
      const wantTime = st.isDirectory() ? options.dirMtimes !== false : options.mtimes !== false;
      const time = wantTime ? ` mtime=${Math.floor(st.mtimeMs / 1000)}` : '';
      const xa = options.xattrs === false ? '' : xattrsOf(abs);
      out[r] = `${kind}${mode} uid=${st.uid} gid=${st.gid}${time}${xa ? ` xattrs=${xa}` : ''}`;
      if (st.isDirectory()) {
        await walk(abs, r);
      }
    }
  }
  await walk(root, '');
  return out;
}

/** One entry of a hand-built tar. */
export type Spec = Partial<TarHeader> & { path: string; content?: string | Buffer };

/** A tar built from specs with our own encoder (so hostile names survive untouched). */
export function buildTar(specs: Spec[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of specs) {
    const content = s.content === undefined ? Buffer.alloc(0) : Buffer.from(s.content);
    const type = s.type ?? 'file';
    parts.push(
      encodeHeader({
        type,
        mode: s.mode ?? (type === 'dir' ? 0o755 : 0o644),
        uid: s.uid ?? 0,
        gid: s.gid ?? 0,
        size: type === 'file' ? content.length : 0,
        mtime: s.mtime ?? 1_700_000_000,
        linkpath: s.linkpath ?? '',
        devmajor: s.devmajor ?? 0,
        devminor: s.devminor ?? 0,
        xattrs: s.xattrs ?? new Map<string, Buffer>(),
        path: s.path,
      }),
    );
    if (type === 'file') {
      parts.push(content, Buffer.alloc(padding(content.length)));
    }
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

export function streamOf(buf: Buffer): Readable {
  return Readable.from([buf], { objectMode: false });
}

export function fileStream(path: string): Readable {
  return createReadStream(path);
}

/** Reads a stream to the end into one buffer (tests only: small data). */
export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) {
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export function sh(cmd: string, cwd?: string): string {
  return execFileSync('bash', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

export function sha256(buf: Buffer): string {
  return sha256Digest(buf);
}

let busybox: { dir: string; tar: Promise<string> } | undefined;
/** Path of the busybox rootfs tar fixture, made once per test file inside `scratch`. */
export function busyboxTar(scratch: string): Promise<string> {
  if (busybox?.dir !== scratch) {
    const out = join(scratch, 'busybox-rootfs.tar');
    busybox = {
      dir: scratch,
      tar: new Promise<string>((resolve, reject) => {
        execFile(BUSYBOX_FIXTURE, [out], (err) => {
          if (err) {
            reject(new Error(`busybox fixture failed: ${err.message}`));
          } else {
            resolve(out);
          }
        });
      }),
    };
  }
  return busybox.tar;
}
