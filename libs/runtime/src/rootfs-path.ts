import { constants, promises as fs } from 'node:fs';
import * as path from 'node:path';

/** Linux's own limit on symlinks followed while resolving one path (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Resolves `unsafePath` as the container would see it with `rootfs` as `/`: every symlink
 * is followed *inside* rootfs (an absolute target restarts at rootfs, `..` stops at rootfs),
 * so a hostile image cannot make us read a host file such as `/etc/passwd -> /host/etc/passwd`.
 * Same idea as runc's github.com/cyphar/filepath-securejoin. Missing components are kept as
 * they are, so the result may not exist. Returns null on a symlink loop.
 */
export async function resolveInRootfs(rootfs: string, unsafePath: string): Promise<string | null> {
  const root = path.resolve(rootfs);
  const pending = unsafePath.split('/');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') {
      continue;
    }
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = (await fs.lstat(candidate)).isSymbolicLink();
    } catch {
      // missing or not a directory: nothing below it exists either, keep the name as is
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      return null;
    }
    const target = await fs.readlink(candidate);
    if (target.startsWith('/')) {
      resolved.length = 0;
    }
    pending.unshift(...target.split('/'));
  }
  return path.join(root, ...resolved);
}

/**
 * Reads a small regular file at `containerPath` inside `rootfs`, resolving symlinks within
 * rootfs only. Returns null when it is missing, not a regular file, or a symlink loop.
 * O_NOFOLLOW on the final open guards against a last-moment swap to a symlink.
 */
export async function readRootfsFile(
  rootfs: string,
  containerPath: string,
  maxBytes: number,
): Promise<string | null> {
  const hostPath = await resolveInRootfs(rootfs, containerPath);
  if (hostPath === null) {
    return null;
  }
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      return null;
    }
    if (stat.size > maxBytes) {
      throw new RangeError(`${containerPath} is larger than ${maxBytes} bytes`);
    }
    return await handle.readFile({ encoding: 'utf8' });
  } finally {
    await handle.close();
  }
}
