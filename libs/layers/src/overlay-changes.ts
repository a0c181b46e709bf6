import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { readXattrsRecursive } from './fs-attrs';
import { OVERLAY_OPAQUE_XATTR } from './layer-apply';

/** `docker diff`'s kinds: A added, C changed, D deleted. */
export type FsChangeKind = 'A' | 'C' | 'D';

export interface FsChange {
  readonly kind: FsChangeKind;
  /** Absolute path inside the container (`/etc/passwd`). */
  readonly path: string;
}

export interface OverlayChangesOptions {
  /** Stop after this many changes (the rest is reported as `truncated`). */
  readonly limit?: number;
  /**
   * Paths left out when they were added empty: mount points the runtime made in the upper dir
   * (`/proc`, `/sys`, `/dev`, `/etc/hosts`…), which Docker keeps in a layer below the
   * container's (its "init" layer); so is a directory added only to hold them.
   */
  readonly ignoreAdded?: readonly string[];
}

export interface OverlayChanges {
  readonly changes: FsChange[];
  readonly truncated: boolean;
}

/** Overlay's whiteout: a character device 0/0 in the upper dir. */
function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (err) {
    if (
      (err as NodeJS.ErrnoException).code === 'ENOENT' ||
      (err as NodeJS.ErrnoException).code === 'ENOTDIR'
    ) {
      return null;
    }
    throw err;
  }
}

/** Go's sort.Strings order (bytewise), which Docker's walk follows. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * The changes of a container's upper dir over the image's layers, as `docker diff` lists them:
 * a whiteout is `D`; an entry the layers below do not have is `A` (and so is everything below
 * it); a file the layers have is `C`; a directory the layers have is `C` when its mode or owner
 * changed or anything below it changed (Docker's naive differ ignores a directory's size and
 * mtime: moby pkg/archive/changes.go statDifferent); an opaque directory (`rm -rf d; mkdir d`)
 * also deletes what the layers held in it. Entries come depth first in byte order, a
 * directory before its contents.
 *
 * `lowers`: the image's extracted layers, topmost first (overlay's lowerdir order).
 */
export async function overlayChanges(
  upper: string,
  lowers: readonly string[],
  options: OverlayChangesOptions = {},
): Promise<OverlayChanges> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const ignore = new Set(options.ignoreAdded ?? []);
  const xattrs = await readXattrsRecursive(upper);
  const opaque = (abs: string): boolean => xattrs.get(abs)?.get(OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
  const changes: FsChange[] = [];
  let truncated = false;

  /** The entry at `path` as the layers below show it (a whiteout there hides it). */
  const below = (path: string): Stats | null => {
    for (const lower of lowers) {
      const st = lstatOrNull(join(lower, path));
      if (st !== null) {
        return isWhiteout(st) ? null : st;
      }
    }
    return null;
  };

  /** Names the layers below hold in directory `path` (whiteouts and opaque dirs respected). */
  const namesBelow = (path: string): Set<string> => {
    const names = new Set<string>();
    const hidden = new Set<string>();
    for (const lower of lowers) {
      const dir = join(lower, path);
      const st = lstatOrNull(dir);
      if (st === null) {
        continue;
      }
      if (!st.isDirectory()) {
        break;
      }
      for (const name of readdirSync(dir)) {
        const child = lstatSync(join(dir, name));
        if (isWhiteout(child)) {
          hidden.add(name);
        } else if (!hidden.has(name)) {
          names.add(name);
        }
      }
      if (opaque(dir)) {
        break;
      }
    }
    return names;
  };

  const push = (change: FsChange): void => {
    if (changes.length >= limit) {
      truncated = true;
      return;
    }
    changes.push(change);
  };

  /** Walks upper dir `path`; returns whether anything below it changed. */
  const walk = (path: string, parentAdded: boolean): boolean => {
    const abs = join(upper, path);
    const names = readdirSync(abs).sort(byteOrder);
    let changed = false;
    for (const name of names) {
      const childPath = path === '/' ? `/${name}` : `${path}/${name}`;
      const childAbs = join(upper, childPath);
      const st = lstatSync(childAbs);
      if (isWhiteout(st)) {
        if (!parentAdded && below(childPath) !== null) {
          push({ kind: 'D', path: childPath });
          changed = true;
        }
        continue;
      }
      const old = parentAdded ? null : below(childPath);
      if (old === null) {
        const empty = st.isDirectory() ? readdirSync(childAbs).length === 0 : st.isFile() && st.size === 0;
        if (ignore.has(childPath) && empty) {
          continue;
        }
        const at = changes.length;
        push({ kind: 'A', path: childPath });
        if (st.isDirectory()) {
          const inner = walk(childPath, true);
          if (!inner && !empty && at < changes.length) {
            changes.splice(at, 1); // it holds only left-out mount points
            continue;
          }
        }
        changed = true;
        continue;
      }
      if (!st.isDirectory() || !old.isDirectory()) {
        push({ kind: 'C', path: childPath });
        changed = true;
        if (st.isDirectory()) {
          walk(childPath, true); // a file replaced by a directory: all of it is new
        }
        continue;
      }
      // A directory on both sides: C before its contents when it or they changed.
      const at = changes.length;
      let inner = walk(childPath, false);
      if (opaque(childAbs)) {
        const kept = new Set(readdirSync(childAbs));
        for (const gone of [...namesBelow(childPath)].filter((n) => !kept.has(n)).sort(byteOrder)) {
          push({ kind: 'D', path: `${childPath}/${gone}` });
          inner = true;
        }
      }
      const metaChanged = st.mode !== old.mode || st.uid !== old.uid || st.gid !== old.gid;
      if (inner || metaChanged) {
        if (changes.length >= limit) {
          truncated = true;
        } else {
          changes.splice(at, 0, { kind: 'C', path: childPath });
        }
        changed = true;
      }
    }
    return changed;
  };

  walk('/', false);
  if (changes.length > limit) {
    changes.length = limit;
    truncated = true;
  }
  return { changes, truncated };
}
