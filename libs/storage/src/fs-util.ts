import { randomUUID } from 'node:crypto';
import { FileHandle, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StorageError } from './storage-error';

/** Node's fs errors carry a string code. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** Unlinks a path, treating "already gone" as success. */
export async function unlinkQuietly(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      return false;
    }
    throw err;
  }
}

/** Fresh unique temp path under `tmpDir` (created if missing). */
export async function tempPath(tmpDir: string): Promise<string> {
  await mkdir(tmpDir, { recursive: true });
  return join(tmpDir, randomUUID());
}

/** fsyncs a directory so a rename or link in it survives a crash. Best effort: not every fs allows it. */
export async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on a directory (EINVAL/EISDIR); the data itself is synced.
  } finally {
    await fh?.close();
  }
}

/**
 * Writes a small file atomically: temp file in `tmpDir` (same filesystem), fsync, rename over
 * `finalPath`, fsync of `dir`. Readers see the old content or the new, never a mix. With
 * `durable: false` the two fsyncs are skipped: for a file that only saves work (a cache
 * record), which a crash may leave empty or old and which its reader then does not trust.
 */
export async function writeFileAtomic(
  tmpDir: string,
  finalPath: string,
  dir: string,
  content: string,
  { durable = true }: { durable?: boolean } = {},
): Promise<void> {
  const tmp = await tempPath(tmpDir);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(content);
      if (durable) {
        await fh.sync();
      }
    } finally {
      await fh.close();
    }
    await mkdir(dir, { recursive: true });
    await rename(tmp, finalPath);
  } catch (err) {
    await unlinkQuietly(tmp).catch(() => undefined);
    throw wrapFsError(err);
  }
  if (durable) {
    await syncDir(dir);
  }
}

/** Keeps StorageErrors, turns disk-level failures into UNAVAILABLE with the cause attached. */
export function wrapFsError(err: unknown): Error {
  if (err instanceof StorageError) {
    return err;
  }
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EROFS' || code === 'EIO' || code === 'EDQUOT' || code === 'EACCES') {
    return new StorageError('UNAVAILABLE', `storage unavailable: ${code}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** Directory entries, or none when the directory does not exist. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return [];
    }
    throw wrapFsError(err);
  }
}
