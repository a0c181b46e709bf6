import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ExcludeFilter, SourceEntry } from './file-copy';

interface HashedEntry {
  readonly path: string;
  readonly st: Stats;
  readonly host: string;
}

/** Read size while hashing a file. */
const READ_BUFFER = 1 << 20;
/** Files up to this size are read with synchronous calls (see file-copy's SYNC_COPY_MAX_BYTES). */
const SYNC_READ_MAX_BYTES = 4 << 20;
const YIELD_EVERY = 256;

/**
 * Digest (sha256 hex) of exactly what a COPY/ADD reads: for every matched source and, for a
 * directory, everything under it: its path, type, permission bits, owner, link target and
 * content. Modification times are left out, as BuildKit's content hash does, so touching a
 * file without changing it keeps the cache.
 *
 * Small files and directory walks use synchronous calls, yielding to the event loop every
 * {@link YIELD_EVERY} entries: a thread-pool round trip per syscall made hashing a 5,000-file
 * context mostly waiting.
 */
export async function hashSources(
  sources: readonly SourceEntry[],
  exclude?: ExcludeFilter,
  /** A file's content digest when already known (a build context's, recorded as it was extracted). */
  known?: (host: string, st: Stats) => string | undefined,
): Promise<string> {
  const entries: HashedEntry[] = [];
  for (const [i, s] of sources.entries()) {
    const top = `${i}:${s.rel}`;
    entries.push({ path: top, st: s.stat, host: s.host });
    if (s.stat.isDirectory()) {
      walk(s.host, top, entries, exclude, s.excludeBase ?? '');
    }
  }
  // One read buffer: a fresh 1 MiB buffer per file made hashing many small files mostly GC.
  const buf = Buffer.allocUnsafe(READ_BUFFER);
  const h = createHash('sha256');
  for (const [i, e] of entries.entries()) {
    let content = '';
    if (e.st.isFile()) {
      content =
        known?.(e.host, e.st) ??
        (e.st.size <= SYNC_READ_MAX_BYTES ? fileDigestSync(e.host, buf) : await fileDigest(e.host, buf));
    } else if (e.st.isSymbolicLink()) {
      content = `link:${readlinkSync(e.host)}`;
    }
    const type = e.st.isDirectory() ? 'd' : e.st.isFile() ? 'f' : e.st.isSymbolicLink() ? 'l' : 'o';
    h.update(
      `${JSON.stringify(e.path)} ${type} ${(e.st.mode & 0o7777).toString(8)} ${e.st.uid}:${e.st.gid} ${content}\n`,
    );
    if (i % YIELD_EVERY === YIELD_EVERY - 1) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  return h.digest('hex');
}

/**
 * Adds what is below `dir` to `out`. Excluded paths are left out as the copy leaves them
 * out (see copyTree), so a change to an excluded file keeps the cache.
 */
function walk(
  dir: string,
  prefix: string,
  out: HashedEntry[],
  exclude: ExcludeFilter | undefined,
  base: string,
): void {
  const names = readdirSync(dir).sort();
  for (const name of names) {
    const host = join(dir, name);
    const st = lstatSync(host);
    const rel = base === '' ? name : `${base}/${name}`;
    const excluded = exclude?.matches(rel) === true;
    if (excluded && (!st.isDirectory() || !exclude.hasExceptions)) {
      continue;
    }
    const path = `${prefix}/${name}`;
    const at = out.length;
    if (!excluded) {
      out.push({ path, st, host });
    }
    if (st.isDirectory()) {
      walk(host, path, out, exclude, rel);
      if (excluded && out.length > at) {
        // kept because something below it is: the copy keeps the directory too
        out.splice(at, 0, { path, st, host });
      }
    }
  }
}

function fileDigestSync(path: string, buf: Buffer): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) {
        break;
      }
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

async function fileDigest(path: string, buf: Buffer): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) {
        break;
      }
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}
