import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  LayerError,
  listMountsUnder,
  listOverlayMountsUnder,
  mountOverlay,
  readMountInfo,
  unmountOverlay,
} from '.';
import { tempDir } from '../test-support/tree';

jest.setTimeout(60_000);

let scratch: string;
beforeAll(async () => {
  scratch = await tempDir();
});
afterAll(async () => {
  for (const m of await listOverlayMountsUnder(scratch)) {
    await unmountOverlay(m.target, { lazy: true });
  }
  await rm(scratch, { recursive: true, force: true });
});

describe('mountOverlay', () => {
  it('mounts 120 lower dirs (topmost first) despite the one-page option limit', async () => {
    const lowers: string[] = [];
    for (let i = 0; i < 120; i++) {
      // long paths: 120 of them would be ~12 KB of options without the short links
      const dir = join(scratch, 'layers', `sha256-${'0'.repeat(60)}${String(i).padStart(4, '0')}`, 'diff');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `f${i}`), String(i));
      await writeFile(join(dir, 'shared'), String(i));
      lowers.push(dir);
    }
    const base = join(scratch, 'c120');
    const target = join(base, 'merged');
    await mountOverlay({
      lowerDirs: lowers,
      upperDir: join(base, 'upper'),
      workDir: join(base, 'work'),
      target,
    });
    try {
      const names = await readdir(target);
      expect(names).toHaveLength(121);
      expect(await readFile(join(target, 'shared'), 'utf8')).toBe('0');
      await writeFile(join(target, 'f5'), 'changed');
      expect(await readFile(join(base, 'upper', 'f5'), 'utf8')).toBe('changed');
      expect(await readFile(join(lowers[5], 'f5'), 'utf8')).toBe('5');
      const listed = await listOverlayMountsUnder(scratch);
      expect(listed.map((m) => m.target)).toContain(target);
      expect(listed.find((m) => m.target === target)?.options).toContain('lowerdir=0:1:2:');
    } finally {
      expect(await unmountOverlay(target)).toEqual({ unmounted: true });
    }
    expect(await readdir(target)).toEqual([]);
    expect((await readMountInfo()).some((m) => m.target === target)).toBe(false);
  });

  it('mounts the same layer twice in the stack (identical steps): A, B, A reads as A on top of B', async () => {
    const a = join(scratch, 'dup', 'a');
    const b = join(scratch, 'dup', 'b');
    await mkdir(a, { recursive: true });
    await mkdir(b, { recursive: true });
    await writeFile(join(a, 'f'), 'a');
    await writeFile(join(b, 'f'), 'b');
    await writeFile(join(b, 'only-b'), 'b');
    const base = join(scratch, 'dup-mount');
    const target = join(base, 'merged');
    // the kernel refuses a repeated lowerdir ("conflicting lowerdir path", ELOOP)
    await mountOverlay({
      lowerDirs: [a, b, a],
      upperDir: join(base, 'upper'),
      workDir: join(base, 'work'),
      target,
    });
    try {
      expect(await readFile(join(target, 'f'), 'utf8')).toBe('a');
      expect(await readFile(join(target, 'only-b'), 'utf8')).toBe('b');
    } finally {
      expect(await unmountOverlay(target)).toEqual({ unmounted: true });
    }
  });

  it('mounts with zero lower dirs (FROM scratch)', async () => {
    const base = join(scratch, 'scratch-mount');
    const target = join(base, 'merged');
    await mountOverlay({ lowerDirs: [], upperDir: join(base, 'upper'), workDir: join(base, 'work'), target });
    try {
      expect(await readdir(target)).toEqual([]);
      await writeFile(join(target, 'hello'), 'world');
      expect(await readFile(join(base, 'upper', 'hello'), 'utf8')).toBe('world');
    } finally {
      await unmountOverlay(target);
    }
  });

  it('mounts a throwaway step filesystem volatile, and it can be mounted again with a fresh work dir', async () => {
    const base = join(scratch, 'volatile-mount');
    const target = join(base, 'merged');
    const spec = { lowerDirs: [], upperDir: join(base, 'upper'), workDir: join(base, 'work'), target };
    await mountOverlay({ ...spec, volatile: true });
    try {
      const info = (await readMountInfo()).find((m) => m.target === target);
      expect(info?.options ?? '').toMatch(/(^|,)(fsync=)?volatile(,|$)/);
      await writeFile(join(target, 'kept'), 'in the page cache');
    } finally {
      await unmountOverlay(target);
    }
    expect(await readFile(join(base, 'upper', 'kept'), 'utf8')).toBe('in the page cache');
    // overlayfs refuses an upper dir whose work dir still holds the volatile marker.
    await rm(spec.workDir, { recursive: true, force: true });
    await mountOverlay(spec);
    try {
      expect(await readFile(join(target, 'kept'), 'utf8')).toBe('in the page cache');
    } finally {
      await unmountOverlay(target);
    }
  });

  it('unmounts neither a plain directory nor a mount through a symlink to it', async () => {
    const base = join(scratch, 'via-link');
    const target = join(base, 'merged');
    await mountOverlay({ lowerDirs: [], upperDir: join(base, 'upper'), workDir: join(base, 'work'), target });
    try {
      await symlink(target, join(base, 'link'));
      expect(await unmountOverlay(join(base, 'link'))).toEqual({ unmounted: false });
      expect(await unmountOverlay(join(base, 'upper'))).toEqual({ unmounted: false });
      expect((await readMountInfo()).some((m) => m.target === target)).toBe(true);
    } finally {
      expect(await unmountOverlay(target)).toEqual({ unmounted: true });
    }
    expect(await unmountOverlay(target)).toEqual({ unmounted: false });
  });

  it('reports a failed mount and unmounting nothing as values/errors with codes', async () => {
    const base = join(scratch, 'bad');
    const err = await mountOverlay({
      lowerDirs: [join(base, 'does-not-exist')],
      upperDir: join(base, 'upper'),
      workDir: join(base, 'work'),
      target: join(base, 'merged'),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayerError);
    expect(err).toMatchObject({ code: 'LAYER_MOUNT_FAILED' });
    expect(await unmountOverlay(join(base, 'merged'))).toEqual({ unmounted: false });
    await expect(
      mountOverlay({
        lowerDirs: [],
        upperDir: join(base, 'u:x'),
        workDir: join(base, 'w'),
        target: join(base, 'm'),
      }),
    ).rejects.toMatchObject({ code: 'LAYER_INVALID_ARGUMENT' });
  });

  it('lists leftover mounts deepest first for a start-up sweep', async () => {
    const base = join(scratch, 'sweep');
    const lower = join(base, 'lower');
    await mkdir(lower, { recursive: true });
    const outer = join(base, 'a', 'merged');
    await mountOverlay({
      lowerDirs: [lower],
      upperDir: join(base, 'a/upper'),
      workDir: join(base, 'a/work'),
      target: outer,
    });
    const inner = join(outer, 'nested');
    await mountOverlay({
      lowerDirs: [lower],
      upperDir: join(base, 'b/upper'),
      workDir: join(base, 'b/work'),
      target: inner,
    });
    const found = (await listOverlayMountsUnder(base)).map((m) => m.target);
    expect(found).toEqual([inner, outer]);
    expect(await listOverlayMountsUnder(join(base, 'a', 'merg'))).toEqual([]);
    for (const t of found) {
      await unmountOverlay(t);
    }
    expect(await listOverlayMountsUnder(base)).toEqual([]);
  });

  it('lists a tmpfs left under the scratch dir too (a step secrets tmpfs), which the overlay list leaves out', async () => {
    const base = join(scratch, 'sweep-tmpfs');
    const target = join(base, 'jobs', 'j1', 'secrets');
    await mkdir(target, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', target]);
    try {
      expect((await listMountsUnder(base)).map((m) => [m.target, m.fsType])).toEqual([[target, 'tmpfs']]);
      expect(await listOverlayMountsUnder(base)).toEqual([]);
      await unmountOverlay(target);
      expect(await listMountsUnder(base)).toEqual([]);
    } finally {
      spawnSync('umount', [target], { stdio: 'ignore' }); // already unmounted when the test passed
    }
  });
});
