// Tree walks of xattrs and disk use: the exec helper's own walk of a small tree must give what
// getfattr and du give (they still serve a large one). Real files, real xattrs (root).
import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execHelper } from './exec-helper';
import { diskUsage, readXattrsRecursive, setXattr } from './fs-attrs';

/** What `getfattr -R` reports, parsed by hand (name=0s<base64> lines), for comparison. */
function getfattrTree(dir: string): Map<string, Map<string, string>> {
  const out = execFileSync(
    'getfattr',
    ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', dir],
    { encoding: 'latin1' },
  );
  const result = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      result.set(line.slice(8), current);
    } else if (current !== undefined && line.includes('=')) {
      const eq = line.indexOf('=');
      current.set(line.slice(0, eq), Buffer.from(line.slice(eq + 3), 'base64').toString('hex'));
    }
  }
  return result;
}

function asHex(tree: Map<string, Map<string, Buffer>>): Map<string, Map<string, string>> {
  return new Map(
    [...tree].map(([p, attrs]) => [p, new Map([...attrs].map(([n, v]) => [n, v.toString('hex')]))]),
  );
}

function du(dir: string): number {
  return Number(execFileSync('du', ['-sx', '--block-size=1', dir], { encoding: 'utf8' }).split('\t')[0]);
}

/** A v2 file capability (cap_net_bind_service=ep): the kernel checks the value's format. */
const CAP_NET_BIND_SERVICE = Buffer.from('0100000200040000000000000000000000000000', 'hex');

describe('readXattrsRecursive and diskUsage', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stratum-fs-attrs-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  afterAll(() => execHelper.stop());

  it('a small tree: every xattr of every entry (binary values, symlinks not followed), as getfattr', async () => {
    await mkdir(join(dir, 'etc/sub'), { recursive: true });
    await writeFile(join(dir, 'etc/sub/f'), 'data');
    await writeFile(join(dir, 'plain'), '');
    await symlink('etc/sub/f', join(dir, 'link'));
    await setXattr(join(dir, 'etc'), 'trusted.overlay.opaque', Buffer.from('y'));
    await setXattr(join(dir, 'etc/sub/f'), 'security.capability', CAP_NET_BIND_SERVICE);
    await setXattr(join(dir, 'etc/sub/f'), 'user.note', Buffer.from('héllo'));
    await setXattr(join(dir, 'link'), 'trusted.overlay.origin', Buffer.from([0, 1, 2]));
    await setXattr(dir, 'user.top', Buffer.from('root of the walk'));

    const walked = await readXattrsRecursive(dir);
    expect(asHex(walked)).toEqual(getfattrTree(dir));
    expect(walked.get(join(dir, 'etc/sub/f'))?.get('security.capability')).toEqual(CAP_NET_BIND_SERVICE);
    expect(walked.has(join(dir, 'plain'))).toBe(false);
    // the link's own xattr, not its target's
    expect([...(walked.get(join(dir, 'link'))?.keys() ?? [])]).toEqual(['trusted.overlay.origin']);
  });

  it('a tree past the walk limit goes to getfattr with the same result', async () => {
    await mkdir(join(dir, 'many'));
    for (let i = 0; i < 2100; i++) {
      await writeFile(join(dir, 'many', String(i)), '');
    }
    await setXattr(join(dir, 'many', '2050'), 'user.deep', Buffer.from('x'));
    await setXattr(join(dir, 'many'), 'trusted.overlay.opaque', Buffer.from('y'));
    expect((await execHelper.tree({ op: 'xattrs', root: dir, limit: 2000 })).stdout.toString()).toBe(
      '{"tooMany": true}',
    );
    const tree = await readXattrsRecursive(dir);
    expect(asHex(tree)).toEqual(getfattrTree(dir));
    expect(
      tree
        .get(join(dir, 'many', '2050'))
        ?.get('user.deep')
        ?.toString(),
    ).toBe('x');
  });

  it('disk use as du -sx counts it: allocated blocks, a hard link once, a sparse file by what it holds', async () => {
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await writeFile(join(dir, 'a/b/big'), Buffer.alloc(300_000, 1));
    await link(join(dir, 'a/b/big'), join(dir, 'a/hard'));
    execFileSync('truncate', ['-s', '1G', join(dir, 'sparse')]);
    await writeFile(join(dir, 'small'), 'x');
    await symlink('/etc/passwd', join(dir, 'ln'));
    const used = await diskUsage(dir);
    expect(used).toBe(du(dir));
    expect(used).toBeGreaterThan(300_000);
    expect(used).toBeLessThan(1_000_000);

    for (let i = 0; i < 2100; i++) {
      await writeFile(join(dir, 'a', `f${i}`), 'y');
    }
    expect(await diskUsage(dir)).toBe(du(dir));
  });

  it('a missing dir: no xattrs (as getfattr), and the disk use check fails', async () => {
    expect((await readXattrsRecursive(join(dir, 'gone'))).size).toBe(0);
    await expect(diskUsage(join(dir, 'gone'))).rejects.toThrow(/du/);
  });
});
