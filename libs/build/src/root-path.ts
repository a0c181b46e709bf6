import { lstat, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { BuildError } from './build-errors';

/** Linux's limit on symlinks followed while resolving one path (ELOOP). */
const MAX_SYMLINKS = 40;

/** The host path of container path `p` under `root`, with `..` stopping at the root; no link is followed. */
export function containerPath(root: string, p: string): string {
  return join(root, posix.normalize(`/${p}`));
}

/**
 * Resolves container path `p` inside `root` the way the container itself would see it:
 * symlinks in its components are followed with `/` meaning `root` and `..` stopping at the
 * root (the rules of filepath-securejoin / moby's FollowSymlinkInScope), so the answer can
 * never point outside `root`. Components after the first missing one are taken literally.
 *
 * @param followFinal whether a symlink in the last component is followed too.
 * @returns the resolved container path (absolute, normalized).
 */
export async function resolveInRoot(root: string, p: string, followFinal: boolean): Promise<string> {
  const pending = posix.normalize(`/${p}`).split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  let missing = false;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '.' || part === '') {
      continue;
    }
    if (part === '..') {
      resolved.pop();
      continue;
    }
    if (missing) {
      resolved.push(part);
      continue;
    }
    const host = join(root, ...resolved, part);
    const st = await lstat(host).catch(() => null);
    if (st === null) {
      missing = true;
      resolved.push(part);
      continue;
    }
    if (!st.isSymbolicLink() || (!followFinal && pending.length === 0)) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      throw new BuildError(`too many levels of symbolic links resolving ${p}`);
    }
    const target = await readlink(host);
    if (target.startsWith('/')) {
      resolved.length = 0;
    }
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return `/${resolved.join('/')}`;
}
