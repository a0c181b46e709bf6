/**
 * Small-tree walks done inside the worker's exec helper (exec-helper.ts) by a thread of it,
 * instead of a getfattr or du process each: a build step's upper dir is usually a handful of
 * entries, and starting a program costs more than walking them (measured here: 6-15 ms for
 * getfattr or du through the helper against well under 1 ms for the walk). A walk gives up past
 * `limit` entries (`{"tooMany": true}`), and the caller runs the program then: on a large tree
 * the C tools are faster than python. A request (`tree(req)`):
 * - `{"op":"xattrs", root, limit}`: every xattr of every entry under `root` (root included),
 *   symlinks not followed, as `{"files": [[path, {name: value}], ...]}` with paths, names and
 *   values base64 (raw bytes; files without xattrs are absent). As `getfattr -R -P -h -d -m -`.
 * - `{"op":"du", root, limit}`: `{"bytes": n}`, the blocks allocated to `root` and everything
 *   under it on its filesystem, each inode once. As `du -sx --block-size=1`.
 * - `{"op":"opaque", paths}`: `{"opaque": [path, ...]}`, those of `paths` (no walk) that are
 *   directories overlay sees as opaque (trusted.overlay.opaque "y").
 */
export const TREE_OPS_PY = String.raw`
def tree_op(req):
    if req['op'] == 'opaque':
        found = []
        for p in req['paths']:
            try:
                if os.getxattr(p, 'trusted.overlay.opaque', follow_symlinks=False) == b'y':
                    found.append(p)
            except OSError:
                pass
        return {'opaque': found}
    root = os.fsencode(req['root'])
    limit = req['limit']
    st = os.lstat(root)
    dev = st.st_dev
    seen = 0
    files = []
    inodes = set()
    total = 0
    want_xattrs = req['op'] == 'xattrs'
    if not want_xattrs and req['op'] != 'du':
        raise TreeError('unknown op')
    def visit(p, s):
        nonlocal total
        if want_xattrs:
            try:
                names = os.listxattr(p, follow_symlinks=False)
            except OSError:
                return
            attrs = {}
            for n in names:
                try:
                    value = os.getxattr(p, n, follow_symlinks=False)
                except OSError:
                    continue
                attrs[base64.b64encode(os.fsencode(n)).decode()] = base64.b64encode(value).decode()
            if attrs:
                files.append([base64.b64encode(p).decode(), attrs])
        elif s.st_dev == dev:
            if s.st_nlink > 1 and (s.st_mode & 0o170000) != 0o040000:
                if (s.st_dev, s.st_ino) in inodes:
                    return
                inodes.add((s.st_dev, s.st_ino))
            total += s.st_blocks * 512
    visit(root, st)
    dirs = [root] if (st.st_mode & 0o170000) == 0o040000 else []
    while dirs:
        d = dirs.pop()
        try:
            entries = os.scandir(d)
        except OSError:
            continue
        with entries:
            for e in entries:
                seen += 1
                if seen > limit:
                    return {'tooMany': True}
                try:
                    s = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not want_xattrs and s.st_dev != dev:
                    continue
                visit(e.path, s)
                if e.is_dir(follow_symlinks=False):
                    dirs.append(e.path)
    return {'files': files} if want_xattrs else {'bytes': total}

class TreeError(Exception):
    pass
`;
