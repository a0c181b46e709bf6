import { createHash } from 'node:crypto';
import { Stats } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SourceEntry } from './file-copy';

interface HashedEntry {
  readonly path: string;
  readonly st: Stats;
  readonly host: string;
}

/** How many files are read at once while hashing. */
const HASH_CONCURRENCY = 16;
/** Read size while hashing a file. */
const READ_BUFFER = 1 << 20;

/**
 * Digest (sha256 hex) of exactly what a COPY/ADD reads: for every matched source and, for a
 * directory, everything under it: its path, type, permission bits, owner, link target and
 * content. Modification times are left out, as BuildKit's content hash does, so touching a
 * file without changing it keeps the cache.
 */
export async function hashSources(sources: readonly SourceEntry[]): Promise<string> {
  const entries: HashedEntry[] = [];
  for (const [i, s] of sources.entries()) {
    const top = `${i}:${s.rel}`;
    entries.push({ path: top, st: s.stat, host: s.host });
    if (s.stat.isDirectory()) {
      await walk(s.host, top, entries);
    }
  }
  const contents = new Array<string>(entries.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    // One read buffer per worker: a fresh 1 MiB buffer per file (createReadStream) made the
    // hashing of a context of many small files mostly garbage collection.
    const buf = Buffer.allocUnsafe(READ_BUFFER);
    while (next < entries.length) {
      const i = next++;
      const e = entries[i];
      if (e.st.isFile()) {
        contents[i] = await fileDigest(e.host, buf);
      } else if (e.st.isSymbolicLink()) {
        contents[i] = `link:${await readlink(e.host)}`;
      } else {
        contents[i] = '';
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, entries.length) }, worker));
  const h = createHash('sha256');
  for (const [i, e] of entries.entries()) {
    const type = e.st.isDirectory() ? 'd' : e.st.isFile() ? 'f' : e.st.isSymbolicLink() ? 'l' : 'o';
    h.update(
      `${JSON.stringify(e.path)} ${type} ${(e.st.mode & 0o7777).toString(8)} ${e.st.uid}:${e.st.gid} ${contents[i]}\n`,
    );
  }
  return h.digest('hex');
}

async function walk(dir: string, prefix: string, out: HashedEntry[]): Promise<void> {
  const names = (await readdir(dir)).sort();
  for (const name of names) {
    const host = join(dir, name);
    const st = await lstat(host);
    const path = `${prefix}/${name}`;
    out.push({ path, st, host });
    if (st.isDirectory()) {
      await walk(host, path, out);
    }
  }
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
