import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, symlinkSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { mountOverlayAt, unmount } from './host-tools';
import { IdMap, mountIdmappedOverlay } from './idmapped-mount';
import { LayerError } from './layer-error';

/** overlayfs refuses more lower layers than this (OVL_MAX_STACK). */
export const MAX_LOWER_DIRS = 500;

/** Arguments of {@link mountOverlay}. */
export interface OverlayMountSpec {
  /** Read-only layers, topmost first. May be empty (FROM scratch). */
  lowerDirs: string[];
  /** Writable layer; must be on the same filesystem as `workDir`. */
  upperDir: string;
  /** overlayfs scratch dir, empty, same filesystem as `upperDir`. */
  workDir: string;
  /** Mount point (created if missing). */
  target: string;
  /**
   * Mount with `volatile`: fsync/syncfs are ignored and unmounting writes nothing back, so a
   * throwaway build-step container does not wait for its upper dir to reach the disk (256 MB
   * written: umount 96 ms -> 4 ms). Its work dir must be recreated before a remount.
   */
  volatile?: boolean;
  /**
   * Mount every layer idmapped with this range ({@link mountIdmappedOverlay}): a step in the
   * user namespace of `idmap` sees the in-image owners and writes them to the upper dir. The
   * upper and work dirs must then be siblings (overlay wants them on one mount).
   */
  idmap?: IdMap;
}

function checkPath(p: string, what: string): string {
  const abs = resolve(p);
  // overlay's option parser splits on ',' and ':' (escaping is kernel-version dependent).
  if (/[,:\\\n]/.test(abs)) {
    throw new LayerError(
      'LAYER_INVALID_ARGUMENT',
      `${what} path must not contain ',', ':', '\\' or newlines: ${abs}`,
    );
  }
  return abs;
}

/** A directory that is and stays empty, used as the lower layer of a FROM-scratch mount. */
async function emptyLowerDir(near: string): Promise<string> {
  const dir = join(dirname(near), '.stratum-empty-lower');
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if ((await readdir(dir)).length !== 0) {
    throw new LayerError('LAYER_INVALID_ARGUMENT', `${dir} must be empty`);
  }
  return dir;
}

/**
 * Mounts an overlay at `target`.
 *
 * The kernel copies mount options into one page (4096 bytes), so 100+ absolute lowerdir
 * paths do not fit. As Docker's overlay2 driver does with its `l/` directory of short
 * symlinks (https://github.com/moby/moby/blob/master/daemon/graphdriver/overlay2/overlay.go,
 * "mountFrom" / "l/"), we make a temp dir of one- or two-character symlinks to the lower
 * dirs and mount with that as the mounting thread's cwd, so `lowerdir=0:1:2…` is resolved relative to
 * it. overlayfs resolves the paths at mount time and holds the directories, so the
 * symlinks are removed right after. https://docs.kernel.org/filesystems/overlayfs.html
 *
 * redirect_dir, metacopy and index are off: with them on, renames and chowns in the merged
 * view are recorded as xattrs that a snapshot of the upper dir could not turn into a layer.
 */
export async function mountOverlay(spec: OverlayMountSpec): Promise<void> {
  const upper = checkPath(spec.upperDir, 'upperDir');
  const work = checkPath(spec.workDir, 'workDir');
  const target = checkPath(spec.target, 'target');
  if (spec.lowerDirs.length > MAX_LOWER_DIRS) {
    throw new LayerError(
      'LAYER_INVALID_ARGUMENT',
      `overlay supports at most ${MAX_LOWER_DIRS} lower dirs, got ${spec.lowerDirs.length}`,
    );
  }
  // The same layer twice (two steps that changed the same bytes, e.g. only a mount point) is
  // refused by the kernel ("conflicting lowerdir path", ELOOP). Keeping only its topmost
  // occurrence changes nothing: that copy already shadows every file and whiteout of the lower one.
  const lowers = [...new Set(spec.lowerDirs.map((l) => resolve(l)))];
  // The small directory work of a mount is done synchronously (here, below and in
  // ContainerFilesystems): each call takes microseconds, and a step's mount waited ~0.3-0.6 ms
  // for each as a thread-pool round trip, a dozen of them in a row per RUN.
  for (const d of [upper, work, target]) {
    mkdirSync(d, { recursive: true });
  }
  if (lowers.length === 0) {
    lowers.push(await emptyLowerDir(work));
  }
  const extra = `redirect_dir=off,metacopy=off,index=off${spec.volatile === true ? ',volatile' : ''}`;
  if (spec.idmap !== undefined) {
    if (dirname(upper) !== dirname(work)) {
      throw new LayerError(
        'LAYER_INVALID_ARGUMENT',
        'an idmapped overlay needs its upper and work dirs side by side',
      );
    }
    // The helper attaches (and detaches again) each layer below it. Never removed recursively: a
    // killed helper's attachments would be the layers themselves (the host sweep unmounts them).
    const stage = join(dirname(upper), `.idmap-${randomBytes(4).toString('hex')}`);
    mkdirSync(stage);
    try {
      await mountIdmappedOverlay({
        map: spec.idmap,
        lowerDirs: lowers,
        rwDir: dirname(upper),
        upperName: basename(upper),
        workName: basename(work),
        target,
        stage,
        options: extra,
      });
    } finally {
      try {
        rmdirSync(stage);
      } catch {
        // left for the host sweep
      }
    }
    return;
  }
  const linkDir = mkdtempSync(join(tmpdir(), 'stratum-ovl-'));
  try {
    const names = lowers.map((lower, i) => {
      const name = i.toString(36);
      symlinkSync(lower, join(linkDir, name));
      return name;
    });
    const options = `lowerdir=${names.join(':')},upperdir=${upper},workdir=${work},${extra}`;
    if (Buffer.byteLength(options) >= 4096) {
      throw new LayerError(
        'LAYER_INVALID_ARGUMENT',
        'overlay mount options exceed one page even with short lowerdir links',
      );
    }
    await mountOverlayAt(linkDir, target, options);
  } finally {
    rmSync(linkDir, { recursive: true, force: true });
  }
}

const { EINVAL, ENOENT } = constants.errno;

/** Result of {@link unmountOverlay}: `false` when nothing was mounted there. */
export interface UnmountResult {
  unmounted: boolean;
}

/**
 * Unmounts `target` (umount(2) in the exec helper). Retries briefly while busy; with `lazy`
 * falls back to a lazy detach (MNT_DETACH, as `umount -l`) as a last resort. Not mounted is a
 * value, not an error.
 */
export async function unmountOverlay(
  target: string,
  options: { lazy?: boolean } = {},
): Promise<UnmountResult> {
  const abs = resolve(target);
  for (let attempt = 0; ; attempt++) {
    // umount(2) itself says "not a mount point" (EINVAL): no read of the whole mount table first
    const res = await unmount(abs);
    if (res.ok) {
      return { unmounted: true };
    }
    if (res.errno === EINVAL || res.errno === ENOENT) {
      return { unmounted: false }; // not (or no longer) a mount point
    }
    if (attempt >= 5) {
      if (options.lazy === true) {
        const lazy = await unmount(abs, { lazy: true });
        if (!lazy.ok) {
          throw new LayerError('LAYER_MOUNT_FAILED', `unmounting ${abs} (lazily) failed: ${lazy.message}`);
        }
        return { unmounted: true };
      }
      throw new LayerError('LAYER_MOUNT_FAILED', `unmounting ${abs} failed: ${res.message}`);
    }
    await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
  }
}

/** One line of /proc/self/mountinfo that we care about. */
export interface MountInfo {
  target: string;
  fsType: string;
  source: string;
  /** Superblock options (lowerdir=…, upperdir=…). */
  options: string;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo. https://docs.kernel.org/filesystems/proc.html (3.5) */
export async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (line === '') {
      continue;
    }
    const [left, right] = line.split(' - ');
    if (right === undefined) {
      continue;
    }
    const fields = left.split(' ');
    const [fsType, source, options] = right.split(' ');
    out.push({
      target: unescapeMountinfo(fields[4]),
      fsType,
      source: unescapeMountinfo(source),
      options: options ?? '',
    });
  }
  return out;
}

/**
 * Overlay mounts at or below `prefix`, deepest first (the order to unmount them in): for a
 * worker's start-up sweep of what a crashed predecessor left mounted.
 */
export async function listOverlayMountsUnder(prefix: string): Promise<MountInfo[]> {
  return listMountsUnder(prefix, 'overlay');
}

/**
 * Every mount at or below `prefix` (of one filesystem type, if given), deepest first: a
 * worker's scratch dir holds overlays and also a step's tmpfs mounts (secrets, `type=tmpfs`).
 */
export async function listMountsUnder(prefix: string, fsType?: string): Promise<MountInfo[]> {
  const root = resolve(prefix);
  const under = (await readMountInfo()).filter(
    (m) =>
      (fsType === undefined || m.fsType === fsType) &&
      (m.target === root || m.target.startsWith(root === '/' ? '/' : `${root}/`)),
  );
  return under.sort(
    (a, b) => b.target.split('/').length - a.target.split('/').length || (a.target < b.target ? -1 : 1),
  );
}

/**
 * Unmounts every mount at or below `dir`, nested ones before their parents (lazily as a last
 * resort: a directory is never deleted through a mount left in it). Returns what was mounted.
 */
export async function unmountAllUnder(dir: string): Promise<MountInfo[]> {
  const mounts = await listMountsUnder(dir);
  for (const m of mounts) {
    await unmountOverlay(m.target, { lazy: true });
  }
  return mounts;
}
