import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, utimes } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BuildError } from './build-errors';

/** True for an ADD source that names a remote file. */
export function isRemoteSource(src: string): boolean {
  return /^https?:\/\//i.test(src);
}

/** The name an ADD gives a downloaded file when the destination is a directory: the URL path's last part. */
export function remoteFileName(url: string, line: number): string {
  let name: string;
  try {
    name = posix.basename(new URL(url).pathname);
  } catch {
    throw new BuildError(`ADD: invalid URL "${url}"`, line);
  }
  if (name === '' || name === '.' || name === '/' || name === '..') {
    throw new BuildError(`ADD: cannot determine a file name from the URL "${url}"`, line);
  }
  return name;
}

/** `sha256:<hex>` from `--checksum`, checked for shape. */
export function parseChecksum(value: string, line: number): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(value.trim());
  if (m === null) {
    throw new BuildError(`ADD --checksum=${value}: expected sha256:<64 hex digits>`, line);
  }
  return `sha256:${m[1]}`;
}

export interface FetchedFile {
  /** Host path of the downloaded file (mode 0600, mtime from Last-Modified). */
  readonly path: string;
  /** Relative name inside `dir` (its basename is what ADD calls it). */
  readonly rel: string;
  readonly digest: string;
}

/**
 * Downloads `url` into `dir` as ADD does (https://docs.docker.com/reference/dockerfile/#adding-files-from-a-url):
 * mode 0600, mtime from the `Last-Modified` header when there is one, checked against
 * `checksum` when given. Remote archives are never unpacked.
 */
export async function fetchRemote(
  url: string,
  dir: string,
  options: { checksum?: string; line: number; signal: AbortSignal },
): Promise<FetchedFile> {
  const name = remoteFileName(url, options.line);
  const sub = join(dir, createHash('sha256').update(url).digest('hex').slice(0, 16));
  await mkdir(sub, { recursive: true });
  const path = join(sub, name);
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: options.signal });
  } catch (err) {
    if (options.signal.aborted) {
      throw err;
    }
    throw new BuildError(`ADD ${url}: ${(err as Error).message}`, options.line);
  }
  if (!res.ok || res.body === null) {
    throw new BuildError(`ADD ${url}: the server answered ${res.status} ${res.statusText}`, options.line);
  }
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(res.body), tap, createWriteStream(path, { mode: 0o600 }));
  const digest = `sha256:${hash.digest('hex')}`;
  if (options.checksum !== undefined && options.checksum !== digest) {
    throw new BuildError(
      `ADD ${url}: checksum mismatch: expected ${options.checksum}, got ${digest}`,
      options.line,
    );
  }
  await chmod(path, 0o600);
  const lastModified = res.headers.get('last-modified');
  const mtime = lastModified === null ? NaN : Date.parse(lastModified);
  if (!Number.isNaN(mtime)) {
    await utimes(path, new Date(mtime), new Date(mtime));
  }
  return { path, rel: posix.join(posix.basename(sub), name), digest };
}
