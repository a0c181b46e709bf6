import {
  chmodSync,
  constants,
  copyFileSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  Stats,
  symlinkSync,
} from 'node:fs';
import { chmod, copyFile, lchown, lstat, mkdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { containerPath, resolveInRoot } from '@stratum/confine';
import fg from 'fast-glob';
import { BuildError } from './build-errors';

export interface CopyOwner {
  readonly uid: number;
  readonly gid: number;
}

/** One source a COPY/ADD reads: a matched path and what it resolves to inside its root. */
export interface SourceEntry {
  /** The path as matched, relative to the source root (its basename names the copy). */
  readonly rel: string;
  /** Host path of the resolved source (symlinks followed inside the source root). */
  readonly host: string;
  readonly stat: Stats;
  /**
   * Where `--exclude` patterns are anchored for what lies below this source: '' (the
   * default) for a source whose contents are copied (patterns relative to it); for a
   * `COPY --parents` match, its path below the pivot.
   */
  readonly excludeBase?: string;
  /** A `COPY --parents` match: host path of its pivot, whose directories its parents copy. */
  readonly parentsRoot?: string;
}

/** `COPY/ADD --exclude` patterns (see `createPathMatcher` of @stratum/dockerfile). */
export interface ExcludeFilter {
  readonly hasExceptions: boolean;
  matches(path: string): boolean;
}

export interface CopyRequest {
  /** Root the sources are relative to (the build context, or another stage's root). */
  readonly sourceRoot: string;
  /** Sources, as {@link matchSources} found them. */
  readonly sources: readonly SourceEntry[];
  /** Absolute path of the container's root (the merged overlay mount). */
  readonly targetRoot: string;
  /** Destination as written (after expansion), resolved against `workdir` when relative. */
  readonly dest: string;
  readonly workdir: string;
  readonly owner: CopyOwner | null;
  readonly mode: number | null;
  readonly line: number;
  /** `COPY` or `ADD`, for messages. */
  readonly kind?: string;
  /** `--exclude` patterns, matched below each directory source (BuildKit: never the source itself). */
  readonly exclude?: ExcludeFilter;
}

/**
 * Finds what COPY/ADD sources name in `sourceRoot`: wildcards as Go's filepath.Match (via
 * fast-glob), literal paths as they are. Like BuildKit, a source path is resolved inside its
 * root with symlinks followed (a symlink source copies its target), never leaving the root.
 */
export async function matchSources(
  sourceRoot: string,
  patterns: readonly string[],
  line: number,
  kind = 'COPY',
): Promise<SourceEntry[]> {
  const out: SourceEntry[] = [];
  for (const pattern of patterns) {
    const clean = posix.normalize(`/${pattern}`).slice(1) || '.';
    let rels: string[];
    if (fg.isDynamicPattern(clean)) {
      rels = (
        await fg(clean, {
          cwd: sourceRoot,
          dot: true,
          onlyFiles: false,
          followSymbolicLinks: false,
          unique: true,
        })
      ).sort();
      if (rels.length === 0) {
        throw new BuildError(`${kind}: no source files were specified matching "${pattern}"`, line);
      }
    } else {
      rels = [clean];
    }
    for (const rel of rels) {
      const host = containerPath(sourceRoot, await resolveInRoot(sourceRoot, rel));
      const st = await lstat(host).catch(() => null);
      if (st === null) {
        throw new BuildError(`${kind}: "${pattern}": not found in the build context`, line);
      }
      if (st.isSymbolicLink()) {
        throw new BuildError(`${kind}: "${pattern}": too many levels of symbolic links`, line);
      }
      out.push({ rel, host, stat: st });
    }
  }
  return out;
}

/**
 * COPY semantics as Docker documents them (https://docs.docker.com/reference/dockerfile/#copy):
 * a directory source copies its contents; several sources (or a wildcard) need a destination
 * ending in `/`; a destination ending in `/` receives files under their own names; missing
 * parents are created; modes and mtimes are kept; owner is root unless `--chown`.
 *
 * Every destination path is resolved inside `targetRoot` (symlinked parents are followed as
 * the container would, `/` meaning the container's root), so a copy can never write outside it.
 */
export async function copyIntoContainer(req: CopyRequest): Promise<number> {
  const kind = req.kind ?? 'COPY';
  const destIsDir = req.dest.endsWith('/') || req.dest === '.' || req.dest.endsWith('/.');
  const destAbs = posix.normalize(posix.isAbsolute(req.dest) ? req.dest : posix.join(req.workdir, req.dest));
  // Several directories (a wildcard such as `dir*`) merge their contents into the destination,
  // as BuildKit copies them (its own --exclude tests copy `dir* /5`); files need a `/`.
  if (req.sources.length > 1 && !destIsDir && !req.sources.every((s) => s.stat.isDirectory())) {
    throw new BuildError(
      `When using ${kind} with more than one source file, the destination must be a directory and end with a /`,
      req.line,
    );
  }
  let copied = 0;
  for (const src of req.sources) {
    if (src.stat.isDirectory()) {
      const dir = await ensureDir(req, destAbs);
      copied += await copyTree(src.host, dir, req, src.excludeBase ?? '');
      continue;
    }
    let parent: string;
    let name: string;
    if (destIsDir) {
      parent = await ensureDir(req, destAbs);
      name = posix.basename(src.rel);
    } else {
      parent = await ensureDir(req, posix.dirname(destAbs));
      name = posix.basename(destAbs);
      // An existing directory (or a link to one) at a destination without `/`: Docker copies into it.
      const existing = await resolveInRoot(req.targetRoot, posix.join(parent, name));
      const st = await lstat(containerPath(req.targetRoot, existing)).catch(() => null);
      if (st?.isDirectory() === true) {
        parent = existing;
        name = posix.basename(src.rel);
      }
    }
    await copyEntry(src.host, containerPath(req.targetRoot, posix.join(parent, name)), src.stat, req);
    copied++;
  }
  return copied;
}

/**
 * Makes container directory `dir` exist (missing parts as 0755, owned by the --chown owner)
 * and returns its resolved container path.
 */
export function ensureContainerDir(req: Omit<CopyRequest, 'sources' | 'dest'>, dir: string): Promise<string> {
  const abs = posix.normalize(posix.isAbsolute(dir) ? dir : posix.join(req.workdir, dir));
  return ensureDir(req as CopyRequest, abs);
}

async function ensureDir(req: CopyRequest, dir: string): Promise<string> {
  const resolved = await resolveInRoot(req.targetRoot, dir);
  let cur = '/';
  for (const part of resolved.split('/').filter(Boolean)) {
    cur = posix.join(cur, part);
    const host = containerPath(req.targetRoot, cur);
    const st = await lstat(host).catch(() => null);
    if (st === null) {
      await mkdir(host, { mode: 0o755 });
      await chmod(host, 0o755);
      if (req.owner !== null) {
        await lchown(host, req.owner.uid, req.owner.gid);
      }
    } else if (!st.isDirectory()) {
      throw new BuildError(`${req.kind ?? 'COPY'}: destination parent ${cur} is not a directory`, req.line);
    }
  }
  return resolved;
}

/**
 * Files at most this big are copied with synchronous calls: a COPY of thousands of small files
 * costs a thread-pool round trip per syscall otherwise (a 5,000-file, 105 MB context took 2.1 s
 * with fs/promises, 0.35 s this way). Bigger files are copied asynchronously, and the loop
 * yields every {@link YIELD_EVERY} entries, so the worker's event loop is never held for long.
 */
const SYNC_COPY_MAX_BYTES = 4 << 20;
const YIELD_EVERY = 256;

/**
 * Copies the contents of `srcDir` into container dir `destDir` (resolved, existing); `base`
 * is `srcDir`'s path where the --exclude patterns are anchored.
 */
async function copyTree(srcDir: string, destDir: string, req: CopyRequest, base: string): Promise<number> {
  let n = 0;
  const names = readdirSync(srcDir).sort();
  for (const name of names) {
    const s = join(srcDir, name);
    const est = lstatSync(s);
    const rel = base === '' ? name : `${base}/${name}`;
    const excluded = req.exclude?.matches(rel) === true;
    // An excluded directory is skipped whole unless an exception (`!x`) may bring back
    // something below it; then it is walked and kept only if something was copied into it.
    if (excluded && (!est.isDirectory() || req.exclude?.hasExceptions !== true)) {
      continue;
    }
    const dContainer = posix.join(destDir, name);
    const d = containerPath(req.targetRoot, dContainer);
    if (est.isDirectory()) {
      const existing = lstatSync(d, { throwIfNoEntry: false }) ?? null;
      const created = existing === null;
      let into = dContainer;
      if (existing?.isSymbolicLink() === true) {
        // A link to a directory in the image is merged into, as `docker cp`/COPY do.
        const target = await resolveInRoot(req.targetRoot, dContainer);
        const tst = lstatSync(containerPath(req.targetRoot, target), { throwIfNoEntry: false });
        if (tst?.isDirectory() === true) {
          into = target;
        } else {
          rmSync(d, { force: true });
          mkdirSync(d);
        }
      } else if (existing === null) {
        mkdirSync(d);
      } else if (!existing.isDirectory()) {
        rmSync(d, { force: true });
        mkdirSync(d);
      }
      const inside = await copyTree(s, into, req, rel);
      if (excluded && inside === 0) {
        if (created) {
          rmSync(d, { recursive: true, force: true });
        }
        continue;
      }
      n += inside;
      applyMeta(containerPath(req.targetRoot, into), est.mode & 0o7777, est, req);
    } else {
      await copyEntry(s, d, est, req);
      n++;
    }
    if (n % YIELD_EVERY === YIELD_EVERY - 1) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  return n;
}

/** Copies one non-directory; `dest` is a host path whose parent is a real directory inside the root. */
async function copyEntry(src: string, dest: string, st: Stats, req: CopyRequest): Promise<void> {
  const existing = lstatSync(dest, { throwIfNoEntry: false });
  if (existing !== undefined) {
    if (existing.isDirectory()) {
      throw new BuildError(
        `${req.kind ?? 'COPY'}: cannot overwrite directory ${dest.slice(req.targetRoot.length)} with a file`,
        req.line,
      );
    }
    // Replace rather than write through: the old entry may be a symlink.
    rmSync(dest, { force: true });
  }
  if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(src), dest);
    lchownSync(dest, req.owner?.uid ?? 0, req.owner?.gid ?? 0);
    lutimesSync(dest, st.atime, st.mtime);
    return;
  }
  if (!st.isFile()) {
    throw new BuildError(
      `${req.kind ?? 'COPY'}: ${src.slice(req.sourceRoot.length)} is not a regular file, directory or symlink`,
      req.line,
    );
  }
  if (st.size <= SYNC_COPY_MAX_BYTES) {
    copyFileSync(src, dest, constants.COPYFILE_FICLONE);
  } else {
    await copyFile(src, dest, constants.COPYFILE_FICLONE);
  }
  applyMeta(dest, st.mode & 0o7777, st, req);
}

function applyMeta(path: string, mode: number, st: Stats, req: CopyRequest): void {
  lchownSync(path, req.owner?.uid ?? 0, req.owner?.gid ?? 0);
  chmodSync(path, req.mode ?? mode);
  lutimesSync(path, st.atime, st.mtime);
}

/**
 * `COPY --parents`: makes the directories of `rel` (a match's path below its pivot, `a/b`) below
 * container dir `destDir`, each missing one with the metadata of the source directory it stands
 * for (`pivotHost/a`, `pivotHost/a/b`): its mode (or --chmod), times, and owner (root unless
 * --chown, as every copied entry here). BuildKit's copier creates the parents of included paths
 * the same way (tonistiigi/fsutil copy: createParentDirs copies each parent's file info); a
 * directory already in the target is left as it is.
 */
export async function makeParentDirs(
  req: Omit<CopyRequest, 'sources' | 'dest'>,
  pivotHost: string,
  destDir: string,
  rel: string,
): Promise<void> {
  let srcCur = pivotHost;
  let destCur = posix.normalize(posix.isAbsolute(destDir) ? destDir : posix.join(req.workdir, destDir));
  for (const part of rel.split('/').filter((p) => p !== '' && p !== '.')) {
    srcCur = join(srcCur, part);
    destCur = posix.join(destCur, part);
    const st = await lstat(srcCur).catch(() => null);
    if (st === null || !st.isDirectory()) {
      return; // a linked or vanished parent: the copy below makes it as a plain directory
    }
    const parent = await resolveInRoot(req.targetRoot, posix.dirname(destCur));
    const host = containerPath(req.targetRoot, posix.join(parent, part));
    const existing = await lstat(host).catch(() => null);
    if (existing !== null) {
      continue;
    }
    const parentHost = containerPath(req.targetRoot, parent);
    if (!(await lstat(parentHost).catch(() => null))?.isDirectory()) {
      return; // the destination's own parents: made (0755) by the copy below
    }
    await mkdir(host);
    applyMeta(host, st.mode & 0o7777, st, req as CopyRequest);
  }
}
