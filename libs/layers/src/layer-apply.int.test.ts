import { appendFile, lstat, mkdir, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyLayer, type FileContentDigest, knownContentDigest, LayerError } from '.';
import {
  buildTar,
  busyboxTar,
  describeTree,
  fileStream,
  sh,
  sha256,
  streamOf,
  tempDir,
} from '../test-support/tree';

jest.setTimeout(60_000);

let scratch: string;
beforeAll(async () => {
  scratch = await tempDir();
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

let n = 0;
async function fresh(): Promise<string> {
  const d = join(scratch, `t${n++}`);
  await mkdir(d);
  return d;
}

describe('applyLayer: busybox rootfs', () => {
  it('extracts like GNU tar, in every compression, and reports the diffID', async () => {
    const tarPath = await busyboxTar(scratch);
    const expectedDiffId = sha256(await readFile(tarPath));
    const reference = await fresh();
    sh(`tar --numeric-owner --same-owner -xpf ${tarPath} -C ${reference}`);
    const want = await describeTree(reference);
    expect(Object.keys(want).length).toBeGreaterThan(100);

    sh(`gzip -n -c ${tarPath} > ${tarPath}.gz && zstd -q -f ${tarPath} -o ${tarPath}.zst`);
    for (const [file, compression] of [
      [tarPath, 'none'],
      [`${tarPath}.gz`, 'gzip'],
      [`${tarPath}.zst`, 'zstd'],
    ] as const) {
      const target = await fresh();
      const result = await applyLayer(fileStream(file), target);
      expect(result.compression).toBe(compression);
      expect(result.diffId).toBe(expectedDiffId);
      expect(result.entries).toBe(Object.keys(want).length + 1); // + "./"
      expect(result.bytes).toBeGreaterThan(500_000);
      expect(await describeTree(target)).toEqual(want);
      expect((await stat(join(target, 'tmp'))).mode & 0o7777).toBe(0o1777);
    }
  });
});

describe('applyLayer: file kinds and metadata', () => {
  it('creates hard links, symlinks, devices, fifos, setuid/sticky modes, owners, xattrs, mtimes', async () => {
    const target = await fresh();
    const tar = buildTar([
      { path: 'd/', type: 'dir', mode: 0o1777, uid: 1000, gid: 1001, mtime: 1_600_000_000 },
      { path: 'd/file', content: 'hello', mode: 0o4755, uid: 1000, gid: 1001, mtime: 1_600_000_100 },
      { path: 'd/hard', type: 'link', linkpath: 'd/file' },
      { path: 'd/sym', type: 'symlink', linkpath: 'file', uid: 7, gid: 8, mtime: 1_600_000_200 },
      { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { path: 'dev/loop9', type: 'block', devmajor: 7, devminor: 9, mode: 0o660, gid: 6 },
      { path: 'dev/fifo', type: 'fifo', mode: 0o620 },
      { path: 'x', content: 'attrs', xattrs: new Map([['user.stratum', Buffer.from([0, 1, 2, 255])]]) },
      { path: '/abs/name', content: 'absolute paths are relative to the root' },
    ]);
    const result = await applyLayer(streamOf(tar), target);
    expect(result.warnings).toEqual([]);
    const tree = await describeTree(target);
    expect(tree['d']).toBe('dir mode=1777 uid=1000 gid=1001 mtime=1600000000');
    expect(tree['d/file']).toMatch(/^file size=5 .* nlink=2 mode=4755 uid=1000 gid=1001 mtime=1600000100$/);
    expect(tree['d/hard']).toMatch(/link=d\/file/);
    expect(tree['d/sym']).toBe('symlink ->file uid=7 gid=8 mtime=1600000200');
    expect(tree['dev/null']).toMatch(/^char 259 mode=666/);
    expect(tree['dev/loop9']).toMatch(/^block 1801 mode=660 uid=0 gid=6/);
    expect(tree['dev/fifo']).toMatch(/^fifo mode=620/);
    expect(tree['x']).toContain('user.stratum=0x000102ff');
    expect(await readFile(join(target, 'abs/name'), 'utf8')).toContain('absolute');
  });

  it('replaces existing entries as the tar says and merges directories', async () => {
    const target = await fresh();
    await applyLayer(
      streamOf(
        buildTar([
          { path: 'a/', type: 'dir' },
          { path: 'a/keep', content: 'lower' },
          { path: 'b', content: 'was a file' },
          { path: 'c/', type: 'dir' },
          { path: 'c/inner', content: 'x' },
          { path: 'l', type: 'symlink', linkpath: 'a' },
        ]),
      ),
      target,
    );
    await applyLayer(
      streamOf(
        buildTar([
          { path: 'a/', type: 'dir', mode: 0o700 },
          { path: 'b/', type: 'dir' },
          { path: 'b/now', content: 'a dir' },
          { path: 'c', content: 'now a file' },
          { path: 'l', content: 'symlink replaced, not followed' },
        ]),
      ),
      target,
    );
    const tree = await describeTree(target, { mtimes: false, dirMtimes: false });
    expect(tree['a']).toMatch(/^dir mode=700/);
    expect(tree['a/keep']).toBeDefined();
    expect(tree['b/now']).toBeDefined();
    expect(tree['c']).toMatch(/^file size=10/);
    expect(tree['l']).toMatch(/^file/);
    expect(await readFile(join(target, 'a/keep'), 'utf8')).toBe('lower');
  });

  it('writes through a symlinked parent that stays inside the root', async () => {
    const target = await fresh();
    await applyLayer(
      streamOf(
        buildTar([
          { path: 'usr/lib/', type: 'dir' },
          { path: 'lib', type: 'symlink', linkpath: 'usr/lib' },
          { path: 'var/run', type: 'symlink', linkpath: '/run' },
          { path: 'run/', type: 'dir' },
          { path: 'lib/libx.so', content: 'x' },
          { path: 'var/run/pid', content: '1' },
        ]),
      ),
      target,
    );
    expect(await readFile(join(target, 'usr/lib/libx.so'), 'utf8')).toBe('x');
    expect(await readFile(join(target, 'run/pid'), 'utf8')).toBe('1');
  });

  it('fails cleanly on a truncated tar', async () => {
    const tar = buildTar([{ path: 'big', content: Buffer.alloc(10_000, 1) }]);
    await expect(applyLayer(streamOf(tar.subarray(0, 3000)), await fresh())).rejects.toMatchObject({
      code: 'LAYER_INVALID_TAR',
    });
    const bad = Buffer.from(tar);
    bad[0] ^= 0xff;
    await expect(applyLayer(streamOf(bad), await fresh())).rejects.toMatchObject({
      code: 'LAYER_INVALID_TAR',
    });
  });
});

describe('applyLayer: devices refused when asked (build contexts)', () => {
  it('fails with LAYER_UNSUPPORTED_ENTRY naming the device and creates no device node', async () => {
    const target = await fresh();
    const tar = buildTar([
      { path: 'ok.txt', content: 'fine' },
      { path: 'dev/sda', type: 'block', devmajor: 8, devminor: 0, mode: 0o660 },
    ]);
    const err = await applyLayer(streamOf(tar), target, { devices: 'reject' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayerError);
    expect((err as LayerError).code).toBe('LAYER_UNSUPPORTED_ENTRY');
    expect((err as LayerError).message).toContain('dev/sda');
    await expect(lstat(join(target, 'dev', 'sda'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('applyLayer: entry limit (MAX_CONTEXT_ENTRIES on the worker)', () => {
  const files = (n: number): Parameters<typeof buildTar>[0] =>
    Array.from({ length: n }, (_, i) => ({ path: `f${i}`, content: '' }));

  it('extracts exactly maxEntries entries', async () => {
    const target = await fresh();
    const result = await applyLayer(streamOf(buildTar(files(50))), target, { kind: 'plain', maxEntries: 50 });
    expect(result.entries).toBe(50);
  });

  it('fails with LAYER_TOO_MANY_ENTRIES at the one after, before writing it', async () => {
    const target = await fresh();
    const err = await applyLayer(streamOf(buildTar(files(51))), target, {
      kind: 'plain',
      maxEntries: 50,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayerError);
    expect((err as LayerError).code).toBe('LAYER_TOO_MANY_ENTRIES');
    expect((err as LayerError).message).toBe('the archive holds more than 50 entries (entry "f50")');
    await expect(lstat(join(target, 'f50'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('applyLayer: plain archives (build contexts)', () => {
  const context = buildTar([
    { path: 'Dockerfile', content: 'FROM scratch\n' },
    { path: '.wh.foo', content: 'not a whiteout' },
    { path: 'dir/', type: 'dir' },
    { path: 'dir/.wh..wh..opq', content: 'not opaque either' },
    { path: 'dir/.wh.', content: 'bare prefix' },
    { path: 'dir/.wh..', content: 'dots' },
    { path: 'dir/.wh..wh.plnk', content: 'aufs meta' },
    { path: 'dir/keep', content: 'k' },
    { path: 'link', type: 'link', linkpath: '.wh.foo' },
  ]);

  it('kind plain extracts .wh.* names as ordinary files', async () => {
    const target = await fresh();
    const result = await applyLayer(streamOf(context), target, { kind: 'plain', devices: 'reject' });
    expect(result.warnings).toEqual([]);
    expect(await readFile(join(target, '.wh.foo'), 'utf8')).toBe('not a whiteout');
    expect(await readFile(join(target, 'dir/.wh..wh..opq'), 'utf8')).toBe('not opaque either');
    expect(await readFile(join(target, 'dir/.wh.'), 'utf8')).toBe('bare prefix');
    expect(await readFile(join(target, 'dir/.wh..'), 'utf8')).toBe('dots');
    expect(await readFile(join(target, 'dir/.wh..wh.plnk'), 'utf8')).toBe('aufs meta');
    expect((await stat(join(target, 'link'))).nlink).toBe(2);
    expect((await readdir(join(target, 'dir'))).sort()).toEqual(
      ['.wh.', '.wh..', '.wh..wh..opq', '.wh..wh.plnk', 'keep'].sort(),
    );
    // Also into a directory that is not empty (the archive rules do not run there).
    const populated = await fresh();
    await writeFile(join(populated, 'other'), 'o');
    await applyLayer(streamOf(context), populated, { kind: 'plain' });
    expect(await readFile(join(populated, '.wh.foo'), 'utf8')).toBe('not a whiteout');
    expect((await readdir(join(populated, 'dir'))).length).toBe(5);
  });

  it('kind layer (the default) reads the same names as whiteouts', async () => {
    const layer = buildTar([
      { path: '.wh.foo', content: '' },
      { path: 'dir/', type: 'dir' },
      { path: 'dir/.wh..wh..opq' },
      { path: 'dir/keep', content: 'k' },
    ]);
    const target = await fresh();
    await applyLayer(streamOf(layer), target);
    expect((await readdir(target)).sort()).toEqual(['dir']);
    expect(await readdir(join(target, 'dir'))).toEqual(['keep']);
    // `.wh..` whiteouts nothing sensible: refused in a layer.
    await expect(
      applyLayer(streamOf(buildTar([{ path: 'dir/.wh..', content: '' }])), await fresh()),
    ).rejects.toMatchObject({ code: 'LAYER_PATH_ESCAPE', entry: 'dir/.wh..' });
  });
});

describe('applyLayer: whiteouts', () => {
  const lower = buildTar([
    { path: 'a/', type: 'dir' },
    { path: 'a/f1', content: '1' },
    { path: 'a/f2', content: '2' },
    { path: 'b/', type: 'dir' },
    { path: 'b/x', content: 'x' },
    { path: 'b/sub/', type: 'dir' },
    { path: 'b/sub/deep', content: 'deep' },
    { path: 'c/', type: 'dir' },
    { path: 'c/y', content: 'y' },
  ]);
  const upper = buildTar([
    { path: '.wh.c' },
    { path: 'a/', type: 'dir' },
    { path: 'a/.wh.f1' },
    { path: 'b/', type: 'dir', mode: 0o750 },
    { path: 'b/before', content: 'kept: same layer, before the opaque marker' },
    { path: 'b/sub/mine', content: 'kept too' },
    { path: 'b/.wh..wh..opq' },
    { path: 'b/after', content: 'after' },
    { path: 'new', content: 'n' },
    { path: '.wh.new' }, // whiteouts never hide entries of their own layer
    { path: '.wh.missing' },
  ]);

  it('oci format deletes lower paths and empties opaque dirs but keeps this layer', async () => {
    const target = await fresh();
    await applyLayer(streamOf(lower), target);
    const result = await applyLayer(streamOf(upper), target);
    expect(result.warnings).toEqual([]);
    expect(Object.keys(await describeTree(target)).sort()).toEqual(
      ['a', 'a/f2', 'b', 'b/after', 'b/before', 'b/sub', 'b/sub/mine', 'new'].sort(),
    );
  });

  it('overlay format writes overlay whiteouts that overlayfs honours', async () => {
    const lowerDir = await fresh();
    const upperDir = await fresh();
    await applyLayer(streamOf(lower), lowerDir, { whiteoutFormat: 'overlay' });
    await applyLayer(streamOf(upper), upperDir, { whiteoutFormat: 'overlay' });
    const tree = await describeTree(upperDir, { mtimes: false, dirMtimes: false, xattrs: false });
    expect(tree['c']).toMatch(/^char 0 mode=0/);
    expect(tree['a/f1']).toMatch(/^char 0/);
    expect(tree['missing']).toMatch(/^char 0/);
    expect(tree['new']).toMatch(/^file/);
    expect(sh(`getfattr -n trusted.overlay.opaque --only-values ${join(upperDir, 'b')}`)).toBe('y');

    const merged = await fresh();
    const work = await fresh();
    const emptyUpper = await fresh();
    sh(
      `mount -t overlay overlay -o lowerdir=${upperDir}:${lowerDir},upperdir=${emptyUpper},workdir=${work} ${merged}`,
    );
    try {
      const viaOci = await fresh();
      await applyLayer(streamOf(lower), viaOci);
      await applyLayer(streamOf(upper), viaOci);
      expect(Object.keys(await describeTree(merged, { xattrs: false })).sort()).toEqual(
        Object.keys(await describeTree(viaOci, { xattrs: false })).sort(),
      );
      expect(await readdir(join(merged, 'b'))).toEqual(expect.arrayContaining(['after', 'before', 'sub']));
    } finally {
      sh(`umount ${merged}`);
    }
  });
});

describe('applyLayer: hostile tars', () => {
  // Each case: a root next to a sentinel dir; nothing may appear in the sentinel or on the host.
  const cases: { name: string; specs: Parameters<typeof buildTar>[0]; code: string; entry: string }[] = [
    {
      name: 'traversal ../../etc/x',
      specs: [{ path: '../../etc/x', content: 'pwned' }],
      code: 'LAYER_PATH_ESCAPE',
      entry: '../../etc/x',
    },
    {
      name: 'traversal to the sentinel',
      specs: [{ path: 'a/../../sentinel/x', content: 'pwned' }],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'a/../../sentinel/x',
    },
    {
      name: 'symlink escaping then a write through it',
      specs: [
        { path: 'evil', type: 'symlink', linkpath: '../sentinel' },
        { path: 'evil/x', content: 'pwned' },
      ],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'evil/x',
    },
    {
      name: 'symlink in a deeper parent component',
      specs: [
        { path: 'a/b/', type: 'dir' },
        { path: 'a/b/c', type: 'symlink', linkpath: '../../../sentinel' },
        { path: 'a/b/c/d/e', content: 'pwned' },
      ],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'a/b/c/d/e',
    },
    {
      name: 'symlink chain escaping',
      specs: [
        { path: 'one', type: 'symlink', linkpath: 'two/..' },
        { path: 'two', type: 'symlink', linkpath: '..' },
        { path: 'one/sentinel/x', content: 'pwned' },
      ],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'one/sentinel/x',
    },
    {
      name: 'hard link to /etc/passwd',
      specs: [{ path: 'passwd', type: 'link', linkpath: '/etc/passwd' }],
      code: 'LAYER_LINK_TARGET_MISSING',
      entry: 'passwd',
    },
    {
      name: 'hard link via ..',
      specs: [{ path: 'passwd', type: 'link', linkpath: '../../../../../../etc/passwd' }],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'passwd',
    },
    {
      name: 'hard link through an escaping symlink',
      specs: [
        { path: 'out', type: 'symlink', linkpath: '../sentinel' },
        { path: 'h', type: 'link', linkpath: 'out/secret' },
      ],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'h',
    },
    {
      name: 'whiteout through an escaping symlink',
      specs: [{ path: 'out', type: 'symlink', linkpath: '../sentinel' }, { path: 'out/.wh.secret' }],
      code: 'LAYER_PATH_ESCAPE',
      entry: 'out/.wh.secret',
    },
    { name: 'whiteout of ..', specs: [{ path: 'a/.wh...' }], code: 'LAYER_PATH_ESCAPE', entry: 'a/.wh...' },
  ];

  // Into an empty root the archive rules (@stratum/tar) refuse first; into one that already
  // holds a file they do not run, and the on-disk resolution must refuse on its own.
  for (const c of cases.flatMap((x) => [
    { ...x, populated: false },
    { ...x, populated: true },
  ])) {
    it(`rejects ${c.name}${c.populated ? ' (non-empty root: on-disk checks)' : ''}`, async () => {
      const base = await fresh();
      const root = join(base, 'root');
      const sentinel = join(base, 'sentinel');
      await mkdir(root);
      if (c.populated) {
        await writeFile(join(root, '.keep'), '');
      }
      await mkdir(sentinel);
      await writeFile(join(sentinel, 'secret'), 'do not touch');
      const passwdBefore = await stat('/etc/passwd');
      const err = await applyLayer(streamOf(buildTar(c.specs)), root).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LayerError);
      expect(err).toMatchObject({ code: c.code, entry: c.entry });
      expect((err as Error).message).toContain(JSON.stringify(c.entry));
      expect((await readdir(sentinel)).sort()).toEqual(['secret']);
      expect(await readFile(join(sentinel, 'secret'), 'utf8')).toBe('do not touch');
      expect((await readdir(base)).sort()).toEqual(['root', 'sentinel']);
      const passwdAfter = await stat('/etc/passwd');
      expect(passwdAfter.nlink).toBe(passwdBefore.nlink);
      await expect(lstat('/etc/x')).rejects.toThrow();
    });
  }

  it('keeps absolute symlink targets inside the root (container semantics) when writing through them', async () => {
    const base = await fresh();
    const root = join(base, 'root');
    await mkdir(root);
    await applyLayer(
      streamOf(
        buildTar([
          { path: 'etc/', type: 'dir' },
          { path: 'hostetc', type: 'symlink', linkpath: '/etc' },
          { path: 'hostetc/stratum-test-file', content: 'inside' },
        ]),
      ),
      root,
    );
    expect(await readFile(join(root, 'etc/stratum-test-file'), 'utf8')).toBe('inside');
    await expect(lstat('/etc/stratum-test-file')).rejects.toThrow();
  });

  it('rejects a symlink loop', async () => {
    const root = await fresh();
    const tar = buildTar([
      { path: 'loop', type: 'symlink', linkpath: '/loop' },
      { path: 'loop/x', content: 'x' },
    ]);
    await expect(applyLayer(streamOf(tar), root)).rejects.toMatchObject({
      code: 'LAYER_PATH_ESCAPE',
      entry: 'loop/x',
    });
  });
});

describe('applyLayer: content digests', () => {
  it("records each written file's sha256 (small, streamed, xattrs, hard link), trusted only while size and mtime match", async () => {
    const target = await fresh();
    const big = Buffer.alloc(3 * 1024 * 1024, 'b'); // above SMALL_FILE: written by the streamed path
    const tar = buildTar([
      { path: 'small', content: 'hello', mtime: 1_600_000_100 },
      { path: 'dir/big', content: big, mtime: 1_600_000_200 },
      { path: 'dir/hard', type: 'link', linkpath: 'small' },
      { path: 'x', content: 'attrs', xattrs: new Map([['user.stratum', Buffer.from('v')]]) },
      { path: 'sym', type: 'symlink', linkpath: 'small' },
    ]);
    const digests = new Map<string, FileContentDigest>();
    await applyLayer(streamOf(tar), target, { kind: 'plain', contentDigests: digests });
    const known = async (rel: string): Promise<string | undefined> =>
      knownContentDigest(digests, rel, await lstat(join(target, rel)));
    for (const rel of ['small', 'dir/big', 'dir/hard', 'x']) {
      expect([rel, await known(rel)]).toEqual([
        rel,
        sha256(await readFile(join(target, rel))).slice('sha256:'.length),
      ]);
    }
    expect(await known('sym')).toBeUndefined();
    // changed after extraction: a new size, or only a new mtime, is not trusted
    await appendFile(join(target, 'small'), '!');
    expect(await known('small')).toBeUndefined();
    await writeFile(join(target, 'x'), 'other');
    await utimes(join(target, 'x'), 1_600_000_000, 1_600_000_000);
    expect(await known('x')).toBeUndefined();
  });
});
