import { constants } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
} from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import fg from 'fast-glob';
import { BuildError } from './build-errors';

export interface CopyOwner {
  readonly uid: number;
  readonly gid: number;
}

export interface CopyRequest {
  /** Root the sources are relative to (the build context, or another stage's root). */
  readonly sourceRoot: string;
  /** Source patterns as written (after variable expansion). */
  readonly sources: readonly string[];
  /** Absolute path of the container's root (the merged overlay mount). */
  readonly targetRoot: string;
  /** Destination as written (after expansion), resolved against `workdir` when relative. */
  readonly dest: string;
  readonly workdir: string;
  readonly owner: CopyOwner | null;
  readonly mode: number | null;
  readonly line: number;
}

/** Joins a container path onto a root without ever leaving it (`..` stops at the root). */
export function containerPath(root: string, p: string): string {
  return join(root, posix.normalize(`/${p}`));
}

/**
 * COPY semantics as Docker documents them (https://docs.docker.com/reference/dockerfile/#copy):
 * a directory source copies its contents; several sources (or a wildcard) need a destination
 * ending in `/`; a destination ending in `/` receives files under their own names; missing
 * parents are created; modes and mtimes are kept; owner is root unless `--chown`.
 */
export async function copyIntoContainer(req: CopyRequest): Promise<number> {
  const destIsDir = req.dest.endsWith('/') || req.dest === '.' || req.dest.endsWith('/.');
  const destAbsInContainer = posix.isAbsolute(req.dest) ? req.dest : posix.join(req.workdir, req.dest);
  const matches: string[] = [];
  for (const pattern of req.sources) {
    const clean = posix.normalize(`/${pattern}`).slice(1) || '.';
    if (fg.isDynamicPattern(clean)) {
      const found = await fg(clean, {
        cwd: req.sourceRoot,
        dot: true,
        onlyFiles: false,
        followSymbolicLinks: false,
        unique: true,
      });
      if (found.length === 0) {
        throw new BuildError(`COPY: no source files were specified matching "${pattern}"`, req.line);
      }
      matches.push(...found.sort());
    } else {
      try {
        await lstat(join(req.sourceRoot, clean));
      } catch {
        throw new BuildError(`COPY: "${pattern}": not found in the build context`, req.line);
      }
      matches.push(clean);
    }
  }
  if (matches.length > 1 && !destIsDir) {
    throw new BuildError(
      'When using COPY with more than one source file, the destination must be a directory and end with a /',
      req.line,
    );
  }
  let copied = 0;
  for (const rel of matches) {
    const src = join(req.sourceRoot, rel);
    const st = await lstat(src);
    let target: string;
    if (st.isDirectory()) {
      target = containerPath(req.targetRoot, destAbsInContainer);
      await ensureDir(req.targetRoot, destAbsInContainer, req.owner);
      copied += await copyTree(src, target, req, true);
      continue;
    }
    target = destIsDir
      ? containerPath(req.targetRoot, posix.join(destAbsInContainer, posix.basename(rel)))
      : containerPath(req.targetRoot, destAbsInContainer);
    const parentInContainer = destIsDir ? destAbsInContainer : posix.dirname(destAbsInContainer);
    await ensureDir(req.targetRoot, parentInContainer, req.owner);
    // Existing directory at a non-slash destination: Docker copies the file into it.
    const existing = await stat(target).catch(() => null);
    if (existing?.isDirectory() === true && !destIsDir) {
      target = join(target, posix.basename(rel));
    }
    await copyEntry(src, target, st, req);
    copied++;
  }
  return copied;
}

/** Creates `dir` (a container path) and missing parents, as root:root 0755 (or the --chown owner for new dirs). */
async function ensureDir(root: string, dir: string, owner: CopyOwner | null): Promise<void> {
  const parts = posix.normalize(`/${dir}`).split('/').filter(Boolean);
  let cur = root;
  for (const part of parts) {
    cur = join(cur, part);
    const st = await lstat(cur).catch(() => null);
    if (st === null) {
      await mkdir(cur, { mode: 0o755 });
      await chmod(cur, 0o755);
      if (owner !== null) {
        await lchown(cur, owner.uid, owner.gid);
      }
    } else if (st.isSymbolicLink()) {
      // Never follow a link out of the root: resolve it as a container path.
      throw new BuildError(`COPY: destination parent ${cur.slice(root.length)} is a symbolic link`, null);
    } else if (!st.isDirectory()) {
      throw new BuildError(`COPY: destination parent ${cur.slice(root.length)} is not a directory`, null);
    }
  }
}

async function copyTree(srcDir: string, destDir: string, req: CopyRequest, isTop: boolean): Promise<number> {
  let n = 0;
  const st = await lstat(srcDir);
  await mkdir(destDir, { recursive: true });
  const names = (await readdir(srcDir)).sort();
  for (const name of names) {
    const s = join(srcDir, name);
    const d = join(destDir, name);
    const est = await lstat(s);
    if (est.isDirectory()) {
      n += await copyTree(s, d, req, false);
    } else {
      await copyEntry(s, d, est, req);
      n++;
    }
  }
  if (!isTop) {
    await applyMeta(destDir, st.mode & 0o7777, st, req);
  }
  return n;
}

async function copyEntry(
  src: string,
  dest: string,
  st: Awaited<ReturnType<typeof lstat>>,
  req: CopyRequest,
): Promise<void> {
  const existing = await lstat(dest).catch(() => null);
  if (existing !== null && (existing.isSymbolicLink() || !existing.isDirectory())) {
    await rm(dest, { force: true });
  }
  await mkdir(dirname(dest), { recursive: true });
  if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dest);
    await lchown(dest, req.owner?.uid ?? 0, req.owner?.gid ?? 0);
    await lutimes(dest, st.atime, st.mtime);
    return;
  }
  if (!st.isFile()) {
    throw new BuildError(
      `COPY: ${src.slice(req.sourceRoot.length)} is not a regular file, directory or symlink`,
      req.line,
    );
  }
  await copyFile(src, dest, constants.COPYFILE_FICLONE);
  await applyMeta(dest, Number(st.mode) & 0o7777, st, req);
}

async function applyMeta(
  path: string,
  mode: number,
  st: Awaited<ReturnType<typeof lstat>>,
  req: CopyRequest,
): Promise<void> {
  await lchown(path, req.owner?.uid ?? 0, req.owner?.gid ?? 0);
  await chmod(path, req.mode ?? mode);
  await lutimes(path, st.atime, st.mtime);
}
