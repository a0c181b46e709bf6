import { constants } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { ConfineError } from './confine-error';

/** Linux's limit on symlinks followed while resolving one path (MAXSYMLINKS, ELOOP). */
const MAX_SYMLINKS = 40;

/**
 * What a symlink met while resolving does:
 * - `in-root`: it is followed *inside* the root, `/` meaning the root and `..` stopping at it
 *   (filepath-securejoin, openat2 RESOLVE_IN_ROOT): a container's own view of its rootfs.
 * - `refuse-escape`: it is followed while it stays inside; an absolute target, or `..` climbing
 *   above the root (in a link or in the path itself), is refused (openat2 RESOLVE_BENEATH).
 *   For files of a build context: a link inside the context works, as in BuildKit; one to
 *   `/etc/...` of whatever host reads it is an error rather than a silently different file.
 * - `refuse`: any symlink on the path is refused.
 */
export type SymlinkPolicy = 'in-root' | 'refuse-escape' | 'refuse';

export interface ResolveOptions {
  /** Default `in-root`. */
  readonly symlinks?: SymlinkPolicy;
  /** Whether a symlink in the last component is followed too (default true). */
  readonly followFinal?: boolean;
  /** Names the input in errors ("Dockerfile path"); default "path". */
  readonly what?: string;
}

function shown(p: string): string {
  return JSON.stringify(p.length > 200 ? `${p.slice(0, 200)}...` : p);
}

/**
 * The host path of container path `p` under `root`, purely lexical: `..` stops at the root,
 * no symlink is looked at. For paths already resolved by {@link resolveInRoot}.
 */
export function containerPath(root: string, p: string): string {
  const clean = posix.normalize(`/${p}`);
  return clean === '/' ? resolve(root) : join(resolve(root), clean);
}

/**
 * Resolves the user path `p` inside `root` component by component, with lstat at every step
 * so the kernel never follows a link for us, and symlinks handled by `opts.symlinks` (see
 * {@link SymlinkPolicy}). Missing components are taken literally (a file to create). `..` after a symlink means the parent of its target, as the kernel does.
 *
 * Assumes nothing else changes the tree under `root` while the answer is used (build contexts
 * and stopped container filesystems); Node has no openat2 to close that window.
 *
 * @returns the resolved path relative to the root, absolute and normalized (`/a/b`); `/` for
 *   the root itself. Turn it into a host path with {@link containerPath}.
 * @throws ConfineError `PATH_ESCAPE` when the policy refuses a link or a climb, `PATH_INVALID`
 *   on a NUL byte or more than 40 links (a loop).
 */
export async function resolveInRoot(root: string, p: string, opts: ResolveOptions = {}): Promise<string> {
  const policy = opts.symlinks ?? 'in-root';
  const followFinal = opts.followFinal ?? true;
  const what = opts.what ?? 'path';
  if (p.includes('\0')) {
    throw new ConfineError('PATH_INVALID', `${what} ${shown(p)} holds a NUL byte`);
  }
  const base = resolve(root);
  const pending = p.split('/');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '' || part === '.') {
      continue;
    }
    if (part === '..') {
      if (resolved.length === 0 && policy !== 'in-root') {
        throw new ConfineError('PATH_ESCAPE', `${what} ${shown(p)} leads outside its root`);
      }
      resolved.pop();
      continue;
    }
    const host = join(base, ...resolved, part);
    let isLink = false;
    try {
      isLink = (await lstat(host)).isSymbolicLink();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        throw err;
      }
      // Missing (or below a file): taken literally. Every later name is still looked at,
      // since a `..` can bring the walk back to where links are.
    }
    const last = pending.every((x) => x === '' || x === '.');
    if (!isLink || (last && !followFinal)) {
      resolved.push(part);
      continue;
    }
    if (policy === 'refuse') {
      throw new ConfineError('PATH_ESCAPE', `${what} ${shown(p)} goes through a symbolic link`);
    }
    if (++links > MAX_SYMLINKS) {
      throw new ConfineError(
        'PATH_INVALID',
        `too many levels of symbolic links resolving ${what} ${shown(p)}`,
      );
    }
    const target = await readlink(host);
    if (target.startsWith('/')) {
      if (policy === 'refuse-escape') {
        throw new ConfineError(
          'PATH_ESCAPE',
          `${what} ${shown(p)} goes through a symbolic link to an absolute path, outside its root`,
        );
      }
      resolved.length = 0;
    }
    pending.unshift(...target.split('/'));
  }
  return `/${resolved.join('/')}`;
}

/** {@link resolveInRoot}, answered as a host path below `root`. */
export async function resolveBeneath(root: string, p: string, opts: ResolveOptions = {}): Promise<string> {
  return containerPath(root, await resolveInRoot(root, p, opts));
}

/**
 * Reads the regular file at user path `p` below `root` (Dockerfile, .dockerignore, an image's
 * /etc/passwd), resolved by {@link resolveInRoot} with `opts`, at most `maxBytes` of it. The
 * final open is O_NOFOLLOW (a last-moment swap to a link fails instead of being followed) and
 * O_NONBLOCK (a FIFO does not hang us).
 *
 * @returns the text, or null when the file is missing or not a regular file (an expected
 *   outcome the caller words for its user).
 * @throws ConfineError `FILE_TOO_LARGE` over `maxBytes`, or a resolution error.
 */
export async function readFileBeneath(
  root: string,
  p: string,
  maxBytes: number,
  opts: Omit<ResolveOptions, 'followFinal'> = {},
): Promise<string | null> {
  const what = opts.what ?? 'path';
  const host = await resolveBeneath(root, p, { ...opts, followFinal: true });
  let handle;
  try {
    handle = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return null;
    }
    if (code === 'ELOOP') {
      throw new ConfineError('PATH_ESCAPE', `${what} ${shown(p)} changed into a symbolic link while read`);
    }
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      return null;
    }
    const tooLarge = (): ConfineError =>
      new ConfineError('FILE_TOO_LARGE', `${what} ${shown(p)} is larger than the limit of ${maxBytes} bytes`);
    if (st.size > maxBytes) {
      throw tooLarge();
    }
    // Read one byte past the limit: a file growing after the stat is still caught.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, st.size + 1));
    let filled = 0;
    while (filled < buf.length) {
      const { bytesRead } = await handle.read(buf, filled, buf.length - filled, filled);
      if (bytesRead === 0) {
        break;
      }
      filled += bytesRead;
    }
    if (filled > maxBytes) {
      throw tooLarge();
    }
    return buf.subarray(0, filled).toString('utf8');
  } finally {
    await handle.close();
  }
}
