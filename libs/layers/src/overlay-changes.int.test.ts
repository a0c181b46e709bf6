import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mknod, setXattr } from './fs-attrs';
import { OVERLAY_OPAQUE_XATTR } from './layer-apply';
import { overlayChanges, unchangedDirectories } from './overlay-changes';

// An upper dir written as overlayfs writes one (whiteouts are char 0/0, an opaque dir carries
// trusted.overlay.opaque=y; root only) over two lower layers, read as `docker diff` lists it.

let root: string;

function tree(base: string, files: Record<string, string | null>): string {
  for (const [p, content] of Object.entries(files)) {
    const abs = join(base, p);
    if (content === null) {
      mkdirSync(abs, { recursive: true });
    } else {
      mkdirSync(join(abs, '..'), { recursive: true });
      writeFileSync(abs, content);
    }
  }
  return base;
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'stratum-changes-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

it('lists A/C/D as docker diff does: directory before its contents, byte order', async () => {
  const bottom = tree(join(root, 'l1'), {
    'bin/sh': 'sh',
    'bin/vi': 'vi',
    'etc/passwd': 'root\n',
    'd/x': 'x',
    'd/y': 'y',
    'var/keep': 'k',
    'gone/file': 'g',
  });
  const top = tree(join(root, 'l2'), { 'etc/group': 'g\n' });
  // The top layer deleted /gone: a whiteout there hides it from the container.
  await mknod(join(top, 'gone'), 'char', 0o600, 0, 0);
  const upper = tree(join(root, 'upper'), {
    bin: null,
    'etc/passwd': 'root\nextra\n',
    'newdir/f': 'new',
    'd/z': 'z',
    proc: null,
    'etc2/hosts': '',
    var: null,
  });
  await mknod(join(upper, 'bin', 'vi'), 'char', 0o600, 0, 0);
  await setXattr(join(upper, 'd'), OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  chmodSync(join(upper, 'var'), 0o700); // copied up with another mode: C, nothing below
  chmodSync(join(bottom, 'var'), 0o755);
  const { changes, truncated } = await overlayChanges(upper, [top, bottom], {
    ignoreAdded: ['/proc', '/etc2/hosts'],
  });
  expect(truncated).toBe(false);
  expect(changes.map((c) => `${c.kind} ${c.path}`)).toEqual([
    'C /bin',
    'D /bin/vi',
    'C /d',
    'A /d/z',
    'D /d/x',
    'D /d/y',
    'C /etc',
    'C /etc/passwd',
    'A /newdir',
    'A /newdir/f',
    'C /var',
  ]);
});

it('stops at the limit and says so', async () => {
  const lower = tree(join(root, 'l1'), { 'a/keep': 'k' });
  const upper = tree(join(root, 'upper'), { 'n/1': '1', 'n/2': '2', 'n/3': '3' });
  const { changes, truncated } = await overlayChanges(upper, [lower], { limit: 2 });
  expect(truncated).toBe(true);
  expect(changes).toEqual([
    { kind: 'A', path: '/n' },
    { kind: 'A', path: '/n/1' },
  ]);
});

it('unchangedDirectories: the directories copy-up alone made, the same as filtering by the full change list', async () => {
  const lower = tree(join(root, 'l1'), {
    'etc/passwd': 'root\n',
    'usr/share/doc/readme': 'r',
    'var/keep': 'k',
    'bin/vi': 'vi',
    'p/d/x': 'x',
    'q/e': null,
    'w/file': 'f',
  });
  const upper = tree(join(root, 'upper'), {
    etc: null, // copied up for a stub runc made and removed: no change
    'usr/share/doc': null, // copied up three deep: none of them changed
    var: null,
    bin: null,
    'p/d': null,
    'q/e': null,
    w: null,
    'new/sub/f': 'n', // all new: not walked below /new
    'etc2/passwd': 'x',
  });
  chmodSync(join(upper, 'var'), 0o700); // another mode: C
  chmodSync(join(lower, 'var'), 0o755);
  await mknod(join(upper, 'bin', 'vi'), 'char', 0o600, 0, 0); // deletes a file below: D
  await mknod(join(upper, 'w', 'never-there'), 'char', 0o600, 0, 0); // hides nothing: no change
  await setXattr(join(upper, 'p', 'd'), OVERLAY_OPAQUE_XATTR, Buffer.from('y')); // hides p/d/x: D
  await setXattr(join(upper, 'q', 'e'), OVERLAY_OPAQUE_XATTR, Buffer.from('y')); // hides nothing
  const found = await unchangedDirectories(upper, [lower]);
  expect(found.sort()).toEqual(['/etc', '/q', '/q/e', '/usr', '/usr/share', '/usr/share/doc', '/w']);
  // the definition it replaces: every directory of the upper dir with no change at or below it
  const { changes } = await overlayChanges(upper, [lower]);
  const dirs: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(upper, rel), { withFileTypes: true })) {
      if (e.isDirectory()) {
        dirs.push(`${rel}/${e.name}`);
        walk(`${rel}/${e.name}`);
      }
    }
  };
  walk('');
  const oracle = dirs.filter((d) => !changes.some((c) => c.path === d || c.path.startsWith(`${d}/`)));
  expect(found.sort()).toEqual(oracle.sort());
});

it('unchangedDirectories: a directory whose counterpart an opaque directory above hides is new, not copied up', async () => {
  // l1 (bottom) has /swap/sub and /keep/sub; l2 replaced /swap opaquely (`rm -rf /swap && mkdir
  // /swap`) and holds a plain /keep. The step made /swap/sub again, empty, with the same mode:
  // the container had no /swap/sub, so it is an A change (the image must carry it).
  const l1 = tree(join(root, 'l1'), { 'swap/sub': null, 'keep/sub': null });
  const l2 = tree(join(root, 'l2'), { swap: null, keep: null });
  await setXattr(join(l2, 'swap'), OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  const upper = tree(join(root, 'upper'), { 'swap/sub': null, 'keep/sub': null });
  const found = await unchangedDirectories(upper, [l2, l1]);
  expect(found.sort()).toEqual(['/keep', '/keep/sub']);
});
