/**
 * Idmapped mounts, done inside the worker's long-lived exec helper (exec-helper.ts) as python3
 * and libc through ctypes: Node has no binding for the new mount API, and a compiled helper
 * would need a compiler on every worker host. Once per helper, not per mount: python's start,
 * ctypes, and the user namespace of a range (a forked child unshares and gets the uid_map; only
 * its file descriptor is kept, per range). A request (`idmap(req)`):
 * - `{"op":"bind", map, pairs:[[source,target],...]}`: each source (a directory or a file) is
 *   cloned (open_tree OPEN_TREE_CLONE), the clone idmapped with `map` (mount_setattr
 *   MOUNT_ATTR_IDMAP) and attached at target (move_mount).
 * - `{"op":"overlay", map, stage, lowers:[...], rw, upper, work, target, options}`: each lower
 *   and `rw` (the directory holding the upper and work dirs: overlay wants both on one mount)
 *   idmapped and attached below `stage`; the overlay is then mounted by a thread of its own with its
 *   fsuid and fsgid set to the range's root (its copy-ups and new files pass through the
 *   idmapped upper and land on disk as uid 0), and the attachments are detached at once: overlay
 *   holds private clones of its layers, so only the overlay itself stays mounted.
 * - `mount_op`: `{"op":"umount", target, lazy}` (umount2), `{"op":"overlay", cwd, target,
 *   options}` (an overlay mount(2) by a thread whose cwd is `cwd`, for relative lowerdirs) and
 *   `{"op":"sysfs", netns, target}` (a read-only sysfs of that network namespace, mounted by a
 *   thread that joined it).
 * Errors are raised as `OSError: [Errno N] what: why` (or IdmapError) for the caller's message.
 */
export const IDMAP_OPS_PY = String.raw`
import ctypes, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)
NR = {'x86_64': (428, 429, 442), 'aarch64': (428, 429, 442)}.get(os.uname().machine)
SYS_open_tree, SYS_move_mount, SYS_mount_setattr = NR or (-1, -1, -1)
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
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

userns_lock = threading.Lock()
userns_fds = {}

def userns_for(m):
    # one user namespace per range for the helper's life: its fd keeps it alive
    key = (m['uid'], m['gid'], m['count'])
    with userns_lock:
        if key not in userns_fds:
            userns_fds[key] = userns_fd(m)
        return userns_fds[key]

def idmap(req):
    if NR is None:
        raise OSError(0, 'idmapped mounts: unsupported machine ' + os.uname().machine)
    m = req['map']
    ns = userns_for(m)
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
            opts = 'lowerdir=%s,upperdir=rw/%s,workdir=rw/%s,%s' % (':'.join(names[:-1]), req['upper'], req['work'], req['options'])
            def mount_overlay():
                # the overlay keeps its mounter's credentials: this thread's, with the range's root
                # as fsuid; its cwd is the stage (short relative layer names: the options fit a page).
                os.chdir(stage)
                as_range_root(m)
                check(libc.mount(b'overlay', req['target'].encode(), b'overlay', 0, opts.encode()), 'mount overlay at ' + req['target'])
            in_own_thread(mount_overlay)
        finally:
            for name in reversed(names):
                p = os.path.join(stage, name)
                detach(p)
                try:
                    os.rmdir(p)
                except OSError:
                    pass
    else:
        raise IdmapError('unknown op')

CLONE_FS = 0x200

def in_own_thread(fn):
    # fn runs in a thread of its own that first unshares its cwd (CLONE_FS); its fsuid, fsgid,
    # capabilities and network namespace are per thread anyway, and all go with the thread.
    # Not a forked child: a fork of this (threaded, refcounting) process leaves every page
    # copy-on-write, and the faults that follow cost TLB shootdowns on every CPU (profiled:
    # ~4% of a busy 2-core host's CPU with one fork per RUN step).
    failure = []
    def body():
        try:
            check(libc.unshare(CLONE_FS), 'unshare(CLONE_FS)')
            fn()
        except BaseException as e:
            failure.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if failure:
        raise failure[0]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
CLONE_NEWNET = 0x40000000

def mount_op(req):
    # plain mount syscalls, without a umount(8) or nsenter(8) + mount(8) process each
    if req['op'] == 'umount':
        # NOFOLLOW: a symlink at the target is not a mount point (EINVAL), never the way to another
        check(libc.umount2(req['target'].encode(), UMOUNT_NOFOLLOW | (MNT_DETACH if req.get('lazy') else 0)), 'umount ' + req['target'])
    elif req['op'] == 'overlay':
        def mount_overlay_plain():
            # relative lowerdir names resolve against this thread's own cwd (the options fit a page)
            os.chdir(req['cwd'])
            check(libc.mount(b'overlay', req['target'].encode(), b'overlay', 0, req['options'].encode()), 'mount overlay at ' + req['target'])
        in_own_thread(mount_overlay_plain)
    elif req['op'] == 'sysfs':
        def mount_sysfs():
            # sysfs shows the mounter's network namespace: the thread joins the one asked for
            fd = os.open(req['netns'], os.O_RDONLY | os.O_CLOEXEC)
            try:
                check(libc.setns(fd, CLONE_NEWNET), 'setns ' + req['netns'])
            finally:
                os.close(fd)
            check(libc.mount(b'sysfs', req['target'].encode(), b'sysfs', MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None), 'mount sysfs at ' + req['target'])
        in_own_thread(mount_sysfs)
    else:
        raise IdmapError('unknown op')

class IdmapError(Exception):
    pass
`;
