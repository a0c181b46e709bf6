import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { opaqueDirs, readXattrsRecursive } from './fs-attrs';
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

/** The entry at `path` as the layers below show it, topmost first (a whiteout there hides it). */
function entryBelow(lowers: readonly string[], path: string): Stats | null {
  for (const lower of lowers) {
    const st = lstatOrNull(join(lower, path));
    if (st !== null) {
      return isWhiteout(st) ? null : st;
    }
  }
  return null;
}

/** Names the layers below hold in directory `path` (whiteouts and opaque dirs respected). */
function namesInLowers(
  lowers: readonly string[],
  path: string,
  opaque: (abs: string) => boolean,
): Set<string> {
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

  const below = (path: string): Stats | null => entryBelow(lowers, path);
  const namesBelow = (path: string): Set<string> => namesInLowers(lowers, path, opaque);

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

/**
 * The upper dir's directories in which, and below which, {@link overlayChanges} sees no change:
 * directories overlay's copy-up alone put there (a directory on both sides, same mode and
 * owner, holding only such directories). The same answer as filtering every directory of the
 * upper dir by the full change list, without its cost: a directory the layers below do not
 * have is all new, so nothing under it is walked or compared (a RUN that writes 20,000 files
 * into a new directory: one lstat instead of ~250 ms), and xattrs are read only for the few
 * candidates (an opaque one that hides entries of the layers below is a change).
 *
 * @returns container paths (`/etc`), parents before their children.
 */
export async function unchangedDirectories(upper: string, lowers: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  /** Walks upper dir `path` (a directory on both sides); returns whether it or anything below changed. */
  const walk = (path: string, st: Stats, old: Stats): boolean => {
    let changed = st.mode !== old.mode || st.uid !== old.uid || st.gid !== old.gid;
    const at = found.length;
    found.push(path);
    for (const name of readdirSync(join(upper, path)).sort(byteOrder)) {
      const childPath = `${path}/${name}`;
      const child = lstatSync(join(upper, childPath));
      const under = entryBelow(lowers, childPath);
      if (isWhiteout(child)) {
        changed ||= under !== null;
      } else if (under === null || !child.isDirectory() || !under.isDirectory()) {
        changed = true; // added, a file (C), or a file turned directory or back
      } else if (walk(childPath, child, under)) {
        changed = true;
      }
    }
    if (changed) {
      found.splice(at, 1);
    }
    return changed;
  };
  for (const name of readdirSync(upper).sort(byteOrder)) {
    const st = lstatSync(join(upper, name));
    const old = entryBelow(lowers, `/${name}`);
    if (st.isDirectory() && old?.isDirectory() === true) {
      walk(`/${name}`, st, old);
    }
  }
  if (found.length === 0) {
    return found;
  }
  const gone = new Set<string>();
  const drop = (dir: string): void => {
    for (let d = dir; d !== ''; d = d.slice(0, d.lastIndexOf('/'))) {
      gone.add(d);
    }
  };
  // A candidate whose counterpart below is hidden from the container (under an opaque
  // directory, a whiteout or a file of a higher layer) is new there: an A change.
  for (const dir of await hiddenBelow(lowers, found)) {
    drop(dir);
  }
  // Opaque candidates: one that hides names of the layers below has D changes, and so have
  // the candidates above it.
  const xattrs = new Map<string, Map<string, Buffer>>();
  const candidates = new Set(found);
  for (const top of found.filter((d) => !candidates.has(d.slice(0, d.lastIndexOf('/'))))) {
    for (const [k, v] of await readXattrsRecursive(join(upper, top))) {
      xattrs.set(k, v);
    }
  }
  const opaque = (abs: string): boolean => xattrs.get(abs)?.get(OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
  for (const dir of found) {
    const abs = join(upper, dir);
    const kept = opaque(abs) ? new Set(readdirSync(abs)) : null;
    // (lower dirs' own opaque markers are not looked at, as overlayChanges does not)
    if (kept !== null && [...namesInLowers(lowers, dir, () => false)].some((n) => !kept.has(n))) {
      drop(dir);
    }
  }
  return found.filter((d) => !gone.has(d));
}

/**
 * Those of `dirs` (container paths found in some layer below) that the layers above the one
 * holding each do hide: an ancestor there is an opaque directory (`rm -rf /d && mkdir /d` in
 * that layer), a whiteout or a file. Opaque markers are read (one helper request) only for the
 * ancestors that higher layers hold as directories.
 */
async function hiddenBelow(lowers: readonly string[], dirs: readonly string[]): Promise<string[]> {
  const hidden = new Set<string>();
  /** Ancestor dirs of higher layers whose opaque marker decides, with the paths they would hide. */
  const ask = new Map<string, string[]>();
  for (const dir of dirs) {
    const holder = lowers.findIndex((lower) => lstatOrNull(join(lower, dir)) !== null);
    for (let i = 0; i < holder && !hidden.has(dir); i++) {
      for (let a = dir.slice(0, dir.lastIndexOf('/')); a !== ''; a = a.slice(0, a.lastIndexOf('/'))) {
        const st = lstatOrNull(join(lowers[i], a));
        if (st === null) {
          continue;
        }
        if (!st.isDirectory()) {
          hidden.add(dir); // a whiteout or a file of a higher layer
          break;
        }
        const abs = join(lowers[i], a);
        ask.set(abs, [...(ask.get(abs) ?? []), dir]);
      }
    }
  }
  for (const abs of await opaqueDirs([...ask.keys()])) {
    for (const dir of ask.get(abs) ?? []) {
      hidden.add(dir);
    }
  }
  return [...hidden];
}
