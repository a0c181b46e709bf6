import { lstat, mkdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { LayerError } from './layer-error';

const MAX_SYMLINKS = 40; // the kernel's ELOOP limit

/**
 * Resolves `components` (all of them directories) inside `root` the way a process chrooted
 * to `root` would, but with lstat at every step, so no symlink is ever followed by the
 * kernel. Symlinks met on the way are followed by us: an absolute target is relative to
 * the root (container semantics), a relative one to its directory; one that climbs above
 * the root with `..` is LAYER_PATH_ESCAPE. Missing directories are created when `create`
 * is set (mode 0755, like Docker's implicit parents), else reported as `undefined`.
 *
 * `knownDirs` caches root-relative paths already seen to be real directories; the caller
 * must clear it whenever it removes anything.
 *
 * Returns the real root-relative components: every prefix of the result is a real
 * directory, so later path operations on it cannot be redirected by a symlink (we are the
 * only writer of the tree while a layer is applied).
 */
export async function resolveDir(
  root: string,
  components: readonly string[],
  entry: string,
  create: boolean,
  knownDirs?: Set<string>,
): Promise<string[] | undefined> {
  const real: string[] = [];
  const queue = [...components];
  let followed = 0;
  while (queue.length > 0) {
    const part = queue.shift() as string;
    if (part === '' || part === '.') {
      continue;
    }
    if (part === '..') {
      if (real.length === 0) {
        throw new LayerError(
          'LAYER_PATH_ESCAPE',
          'a symlink on the path points outside the layer root',
          entry,
        );
      }
      real.pop();
      continue;
    }
    const key = real.length === 0 ? part : `${real.join('/')}/${part}`;
    if (knownDirs?.has(key) === true) {
      real.push(part);
      continue;
    }
    const abs = join(root, ...real, part);
    let st;
    try {
      st = await lstat(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw e;
      }
      if (!create) {
        return undefined;
      }
      await mkdir(abs, { mode: 0o755 });
      knownDirs?.add(key);
      real.push(part);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++followed > MAX_SYMLINKS) {
        throw new LayerError('LAYER_PATH_ESCAPE', 'too many levels of symbolic links', entry);
      }
      const target = await readlink(abs);
      if (target.startsWith('/')) {
        real.length = 0;
      }
      queue.unshift(...target.split('/'));
      continue;
    }
    if (!st.isDirectory()) {
      throw new LayerError('LAYER_NOT_A_DIRECTORY', `${join(...real, part)} is not a directory`, entry);
    }
    knownDirs?.add(key);
    real.push(part);
  }
  return real;
}
