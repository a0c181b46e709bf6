// Extended attributes and device nodes through host CLIs: node has no xattr or mknod API
// and we avoid native addons. Debian packages: `attr` (getfattr/setfattr), coreutils (mknod).
import { execHelper } from './exec-helper';
import { run } from './host-tools';

/** Sets one xattr on `path` without following a final symlink. */
export async function setXattr(path: string, name: string, value: Buffer): Promise<void> {
  // "0s" prefix = base64, so binary values (security.capability) survive the CLI.
  await run('setfattr', ['-h', '-n', name, '-v', `0s${value.toString('base64')}`, '--', path]);
}

/** Creates a device node or fifo. */
export async function mknod(
  path: string,
  kind: 'char' | 'block' | 'fifo',
  mode: number,
  major = 0,
  minor = 0,
): Promise<void> {
  const m = (mode & 0o7777).toString(8);
  if (kind === 'fifo') {
    await run('mknod', ['-m', m, '--', path, 'p']);
  } else {
    await run('mknod', ['-m', m, '--', path, kind === 'char' ? 'c' : 'b', String(major), String(minor)]);
  }
}

/** getfattr escapes bytes outside printable ASCII (and `\`) in names as `\ooo`. */
function unescapeGetfattr(s: string): string {
  const bytes = Buffer.from(
    s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))),
    'latin1',
  );
  return bytes.toString('utf8');
}

/**
 * All xattrs (every namespace, as root) of every file under `dir`, without following
 * symlinks. Keys are absolute paths; files without xattrs are absent. A small tree is walked by
 * the exec helper itself (tree-ops.ts), a larger one by one `getfattr -R` run.
 */
export async function readXattrsRecursive(dir: string): Promise<Map<string, Map<string, Buffer>>> {
  const walked = await walkTree<{ files: [string, Record<string, string>][] }>('xattrs', dir);
  if (walked !== null) {
    const decode = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8');
    return new Map(
      walked.files.map(([file, attrs]) => [
        decode(file),
        new Map(Object.entries(attrs).map(([name, value]) => [decode(name), Buffer.from(value, 'base64')])),
      ]),
    );
  }
  return getfattrRecursive(dir);
}

/**
 * Allocated bytes of `dir` and everything under it on its filesystem, each inode once
 * (`du -sx --block-size=1`): walked by the exec helper when small, else by du.
 */
export async function diskUsage(dir: string): Promise<number> {
  const walked = await walkTree<{ bytes: number }>('du', dir);
  if (walked !== null) {
    return walked.bytes;
  }
  const { stdout } = await run('du', ['-sx', '--block-size=1', dir]);
  return Number(stdout.toString().split('\t')[0]);
}

/**
 * Which of `dirs` overlay sees as opaque (`trusted.overlay.opaque` "y"): one helper request,
 * no walk. A path that is gone or has no such xattr is not.
 */
export async function opaqueDirs(dirs: readonly string[]): Promise<Set<string>> {
  if (dirs.length === 0) {
    return new Set();
  }
  const out = await execHelper.tree({ op: 'opaque', paths: [...dirs] });
  if (out.code !== 0) {
    throw new Error(`reading overlay opaque markers: ${out.stderr.toString('utf8')}`);
  }
  return new Set((JSON.parse(out.stdout.toString('utf8')) as { opaque: string[] }).opaque);
}

/** Entries a helper walk looks at before it leaves the tree to getfattr or du (see tree-ops.ts). */
const HELPER_WALK_LIMIT = 2000;

/** The helper's walk of `dir`, or null when the tree is too large for it (or the walk failed). */
async function walkTree<T>(op: 'xattrs' | 'du', dir: string): Promise<T | null> {
  const out = await execHelper.tree({ op, root: dir, limit: HELPER_WALK_LIMIT }).catch(() => null);
  if (out === null || out.code !== 0) {
    return null;
  }
  const reply = JSON.parse(out.stdout.toString('utf8')) as T & { tooMany?: boolean };
  return reply.tooMany === true ? null : reply;
}

/** {@link readXattrsRecursive} by one `getfattr -R` run. */
async function getfattrRecursive(dir: string): Promise<Map<string, Map<string, Buffer>>> {
  const { stdout } = await run(
    'getfattr',
    ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', dir],
    {
      allowFail: true, // exits 1 when some file has no xattrs support; output is still complete
    },
  );
  const result = new Map<string, Map<string, Buffer>>();
  let current: Map<string, Buffer> | undefined;
  // latin1 keeps every byte as one char, so \ooo escapes rebuild the exact name bytes.
  for (const line of stdout.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      result.set(unescapeGetfattr(line.slice('# file: '.length)), current);
      continue;
    }
    const eq = line.indexOf('=');
    if (current === undefined || line === '' || eq === -1) {
      continue;
    }
    const name = unescapeGetfattr(line.slice(0, eq));
    const raw = line.slice(eq + 1);
    let value: Buffer;
    if (raw.startsWith('0s')) {
      value = Buffer.from(raw.slice(2), 'base64');
    } else if (raw.startsWith('0x')) {
      value = Buffer.from(raw.slice(2), 'hex');
    } else if (raw.startsWith('"') && raw.endsWith('"')) {
      value = Buffer.from(unescapeGetfattr(raw.slice(1, -1)), 'utf8');
    } else {
      value = Buffer.alloc(0);
    }
    current.set(name, value);
  }
  return result;
}
