// Idmapped mounts for RUN steps in a user namespace: the step's root is an unprivileged uid
// range on the host while the layers on disk keep their in-image owners.
// https://docs.kernel.org/filesystems/idmappings.html · mount_setattr(2) · open_tree(2)
// https://docs.kernel.org/filesystems/overlayfs.html ("idmapped layers", Linux >= 5.19)
import { mkdir, mkdtemp, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execHelper, HelperResult } from './exec-helper';
import { run, unmount } from './host-tools';
import { LayerError } from './layer-error';

/**
 * A contiguous uid/gid range on the host: id `n` of the step (0 <= n < count) is `uid + n` /
 * `gid + n` on the host, as `dockerd --userns-remap`'s subordinate range.
 */
export interface IdMap {
  readonly uid: number;
  readonly gid: number;
  readonly count: number;
}

/** Largest range (the 32-bit id space less the invalid id). */
const MAX_ID = 0xfffffffe;

/**
 * Parses `USERNS_REMAP`'s range: `uid:count` (the same range for groups) or `uid:gid:count`.
 * The range must start above 0 and hold at least 65536 ids (so every id a Debian or Alpine
 * image uses, nobody's 65534 included, is mapped).
 */
export function parseIdMap(text: string): IdMap {
  const parts = text.split(':');
  if ((parts.length !== 2 && parts.length !== 3) || parts.some((p) => !/^\d+$/.test(p))) {
    throw new LayerError(
      'LAYER_INVALID_ARGUMENT',
      `a uid range is "uid:count" or "uid:gid:count" (e.g. 100000:65536), got ${JSON.stringify(text)}`,
    );
  }
  const nums = parts.map(Number);
  const map: IdMap =
    nums.length === 2
      ? { uid: nums[0], gid: nums[0], count: nums[1] }
      : { uid: nums[0], gid: nums[1], count: nums[2] };
  if (map.uid === 0 || map.gid === 0) {
    throw new LayerError('LAYER_INVALID_ARGUMENT', 'the remapped uid/gid range must not start at 0 (root)');
  }
  if (map.count < 65536) {
    throw new LayerError(
      'LAYER_INVALID_ARGUMENT',
      `the remapped range must hold at least 65536 ids, got ${map.count}`,
    );
  }
  if (map.uid + map.count - 1 > MAX_ID || map.gid + map.count - 1 > MAX_ID) {
    throw new LayerError('LAYER_INVALID_ARGUMENT', 'the remapped range goes past the largest uid/gid');
  }
  return map;
}

async function runHelper(request: unknown, what: string): Promise<void> {
  // In the long-lived exec helper (idmap-ops.ts): ~5 ms a mount, against 30-80 ms for a python3
  // started per mount (its start-up, ctypes and a new user namespace each time).
  let res: HelperResult;
  try {
    res = await execHelper.idmap(request);
  } catch (e) {
    throw new LayerError('LAYER_MOUNT_FAILED', `${what}: ${(e as Error).message}`, undefined, { cause: e });
  }
  if (res.code !== 0) {
    const last = res.stderr.toString().trim().split('\n').pop() ?? '';
    throw new LayerError('LAYER_MOUNT_FAILED', `${what}: ${last || `the helper failed (${res.code})`}`);
  }
}

/**
 * Mounts, for each pair, an idmapped view of `source` (a directory or a file) at `target`
 * (which must exist and be of the same kind): a file owned by `n` on disk shows as
 * `map.uid + n` there, so a step in the user namespace of `map` sees it owned by `n`.
 * Unmount each target with {@link removeMountPoint} (or umount(2)) when done.
 */
export async function mountIdmapped(
  map: IdMap,
  pairs: readonly (readonly [string, string])[],
): Promise<void> {
  if (pairs.length === 0) {
    return;
  }
  await runHelper(
    { op: 'bind', map, pairs: pairs.map(([s, t]) => [resolve(s), resolve(t)]) },
    'idmapped mount',
  );
}

/** What {@link mountIdmappedOverlay} mounts: as {@link OverlayMountSpec}, its layers seen through `map`. */
export interface IdmappedOverlaySpec {
  readonly map: IdMap;
  /** Topmost first; not empty. */
  readonly lowerDirs: readonly string[];
  /** The directory holding both the upper and the work dir. */
  readonly rwDir: string;
  /** Upper and work dir names inside `rwDir`. */
  readonly upperName: string;
  readonly workName: string;
  readonly target: string;
  /** Empty directory for the helper's transient attachments (removed by it after the mount). */
  readonly stage: string;
  /** Further overlay options (`redirect_dir=off,...`). */
  readonly options: string;
}

/** An overlay over idmapped layers (see {@link HELPER}); only the overlay stays mounted. */
export async function mountIdmappedOverlay(spec: IdmappedOverlaySpec): Promise<void> {
  await runHelper(
    {
      op: 'overlay',
      map: spec.map,
      stage: resolve(spec.stage),
      lowers: spec.lowerDirs.map((l) => resolve(l)),
      rw: resolve(spec.rwDir),
      upper: spec.upperName,
      work: spec.workName,
      target: resolve(spec.target),
      options: spec.options,
    },
    `mounting an idmapped overlay at ${spec.target}`,
  );
}

/**
 * Whether this host can run steps in a user namespace with `map`: an overlay over idmapped
 * layers is mounted in a scratch directory below `dir`, a file is written through it and must
 * land on disk owned by uid 0 and show as `map.uid` in the mount; everything is removed after.
 * Resolves with null when it works, else with the reason.
 */
export async function probeIdmappedOverlay(dir: string, map: IdMap): Promise<string | null> {
  await mkdir(dir, { recursive: true });
  const root = await mkdtemp(join(dir, 'userns-probe-'));
  const merged = join(root, 'merged');
  let mounted = false;
  try {
    await Promise.all(
      ['lower', 'rw/upper', 'rw/work', 'merged', 'stage'].map((d) =>
        mkdir(join(root, d), { recursive: true }),
      ),
    );
    await writeFile(join(root, 'lower', 'f'), 'x');
    await mountIdmappedOverlay({
      map,
      lowerDirs: [join(root, 'lower')],
      rwDir: join(root, 'rw'),
      upperName: 'upper',
      workName: 'work',
      target: merged,
      stage: join(root, 'stage'),
      options: 'redirect_dir=off,metacopy=off,index=off',
    });
    mounted = true;
    const seen = await stat(join(merged, 'f'));
    if (seen.uid !== map.uid) {
      return `a root-owned file showed as uid ${seen.uid} through the idmapped overlay, not ${map.uid}`;
    }
    // written as the range's root (as the step would): on disk it must be uid 0
    // (from inside: the directories above may not let the range's root through, the container's root is given to runc)
    await run('setpriv', [`--reuid=${map.uid}`, `--regid=${map.gid}`, '--clear-groups', 'touch', 'g'], {
      cwd: merged,
    });
    const onDisk = await stat(join(root, 'rw', 'upper', 'g'));
    if (onDisk.uid !== 0 || onDisk.gid !== 0) {
      return `a file the range's root wrote reached the upper dir as ${onDisk.uid}:${onDisk.gid}, not 0:0`;
    }
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    if (mounted) {
      await unmount(merged);
    }
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Removes an empty attachment point left by {@link mountIdmapped} after its unmount. */
export async function removeMountPoint(target: string): Promise<void> {
  await unmount(target);
  await rmdir(target).catch(async () => rm(target, { force: true }).catch(() => undefined));
}
