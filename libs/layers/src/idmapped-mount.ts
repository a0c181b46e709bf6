// Idmapped mounts for RUN steps in a user namespace: the step's root is an unprivileged uid
// range on the host while the layers on disk keep their in-image owners.
// https://docs.kernel.org/filesystems/idmappings.html · mount_setattr(2) · open_tree(2)
// https://docs.kernel.org/filesystems/overlayfs.html ("idmapped layers", Linux >= 5.19)
import { mkdir, mkdtemp, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { run } from './host-tools';
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

/**
 * The helper the worker runs as root (python3 and libc through ctypes: Node has no binding for
 * the new mount API, and a compiled helper would need a compiler on every worker host).
 * argv[1] is a JSON request:
 * - `{"op":"bind", map, pairs:[[source,target],...]}`: each source (a directory or a file) is
 *   cloned (open_tree OPEN_TREE_CLONE), the clone idmapped with `map` (mount_setattr
 *   MOUNT_ATTR_IDMAP) and attached at target (move_mount).
 * - `{"op":"overlay", map, stage, lowers:[...], rw, upper, work, target, options}`: each lower
 *   and `rw` (the directory holding the upper and work dirs: overlay wants both on one mount)
 *   idmapped and attached below `stage`; the overlay is then mounted with the mounter's fsuid and
 *   fsgid set to the range's root (its copy-ups and new files pass through the idmapped upper
 *   and land on disk as uid 0), and the attachments are detached at once: overlay holds private
 *   clones of its layers, so only the overlay itself stays mounted.
 * The user namespace giving the mapping is made by a forked child (unshare + uid_map) and only
 * its file descriptor is kept.
 */
const HELPER = String.raw`
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
NR = {'x86_64': (428, 429, 442), 'aarch64': (428, 429, 442)}.get(os.uname().machine)
if NR is None:
    sys.exit('idmapped mounts: unsupported machine ' + os.uname().machine)
SYS_open_tree, SYS_move_mount, SYS_mount_setattr = NR
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
MNT_DETACH = 2
libc.syscall.restype = ctypes.c_long

class MountAttr(ctypes.Structure):
    _fields_ = [('attr_set', ctypes.c_uint64), ('attr_clr', ctypes.c_uint64),
                ('propagation', ctypes.c_uint64), ('userns_fd', ctypes.c_uint64)]

class CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]

class CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32), ('inheritable', ctypes.c_uint32)]

def check(r, what):
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, '%s: %s' % (what, os.strerror(e)))
    return r

def userns_fd(m):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(1)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        mine = os.readlink('/proc/self/ns/user')
        for _ in range(5000):
            if os.readlink('/proc/%d/ns/user' % pid) != mine:
                break
            time.sleep(0.001)
        else:
            raise OSError(0, 'the user namespace child did not unshare')
        with open('/proc/%d/uid_map' % pid, 'w') as f:
            f.write('0 %d %d\n' % (m['uid'], m['count']))
        with open('/proc/%d/setgroups' % pid, 'w') as f:
            f.write('deny')
        with open('/proc/%d/gid_map' % pid, 'w') as f:
            f.write('0 %d %d\n' % (m['gid'], m['count']))
        return os.open('/proc/%d/ns/user' % pid, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.write(w, b'x')
        os.close(w)
        os.waitpid(pid, 0)

def attach(source, target, ns):
    t = check(libc.syscall(SYS_open_tree, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), 'open_tree ' + source)
    try:
        a = MountAttr(MOUNT_ATTR_IDMAP, 0, 0, ns)
        check(libc.syscall(SYS_mount_setattr, t, b'', AT_EMPTY_PATH, ctypes.byref(a), ctypes.c_size_t(ctypes.sizeof(a))), 'mount_setattr (idmap) ' + source)
        check(libc.syscall(SYS_move_mount, t, b'', AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH), 'move_mount ' + target)
    finally:
        os.close(t)

def detach(target):
    libc.umount2(target.encode(), MNT_DETACH)

def as_range_root(m):
    # fsuid/fsgid of the range's root; setfsuid drops the filesystem capabilities, put them back
    libc.setfsgid(m['gid'])
    libc.setfsuid(m['uid'])
    h = CapHeader(0x20080522, 0)
    d = (CapData * 2)()
    check(libc.capget(ctypes.byref(h), d), 'capget')
    for x in d:
        x.effective = x.permitted
    check(libc.capset(ctypes.byref(h), d), 'capset')

req = json.loads(sys.argv[1])
m = req['map']
ns = userns_fd(m)
if req['op'] == 'bind':
    done = []
    try:
        for source, target in req['pairs']:
            attach(source, target, ns)
            done.append(target)
    except BaseException:
        for t in reversed(done):
            detach(t)
        raise
elif req['op'] == 'overlay':
    stage = req['stage']
    names = []
    try:
        for i, lower in enumerate(req['lowers']):
            name = format(i, 'x')
            os.mkdir(os.path.join(stage, name))
            names.append(name)
            attach(lower, os.path.join(stage, name), ns)
        os.mkdir(os.path.join(stage, 'rw'))
        names.append('rw')
        attach(req['rw'], os.path.join(stage, 'rw'), ns)
        os.chdir(stage)
        opts = 'lowerdir=%s,upperdir=rw/%s,workdir=rw/%s,%s' % (':'.join(names[:-1]), req['upper'], req['work'], req['options'])
        pid = os.fork()
        if pid == 0:
            # the overlay keeps its mounter's credentials: this child's, with the range's root as fsuid
            try:
                as_range_root(m)
                check(libc.mount(b'overlay', req['target'].encode(), b'overlay', 0, opts.encode()), 'mount overlay at ' + req['target'])
            except OSError as e:
                sys.stderr.write(str(e) + '\n')
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            sys.exit(1)
    finally:
        os.chdir('/')
        for name in reversed(names):
            p = os.path.join(stage, name)
            detach(p)
            try:
                os.rmdir(p)
            except OSError:
                pass
else:
    sys.exit('unknown op')
`;

async function runHelper(request: unknown, what: string): Promise<void> {
  // -I -S: no user site, no PYTHON* variables, no site import (a root helper; halves its start-up:
  // an idmapped 10-layer overlay mounted in 28-38 ms median here, against 140-190 ms without)
  const res = await run('python3', ['-I', '-S', '-c', HELPER, JSON.stringify(request)], { allowFail: true });
  if (res.code !== 0) {
    // the helper's own error (a traceback's last line: `OSError: [Errno 22] mount_setattr ...`), not its source
    const last = res.stderr.trim().split('\n').pop() ?? '';
    throw new LayerError('LAYER_MOUNT_FAILED', `${what}: ${last || `the helper exited with ${res.code}`}`);
  }
}

/**
 * Mounts, for each pair, an idmapped view of `source` (a directory or a file) at `target`
 * (which must exist and be of the same kind): a file owned by `n` on disk shows as
 * `map.uid + n` there, so a step in the user namespace of `map` sees it owned by `n`.
 * Unmount each target with `umount` when done.
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
      await run('umount', [merged], { allowFail: true });
    }
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Removes an empty attachment point left by {@link mountIdmapped} after its unmount. */
export async function removeMountPoint(target: string): Promise<void> {
  await run('umount', [target], { allowFail: true });
  await rmdir(target).catch(async () => rm(target, { force: true }).catch(() => undefined));
}
