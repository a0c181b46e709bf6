import { execFileSync } from 'node:child_process';
import { chown, lstat, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  LayerError,
  listMountsUnder,
  mountIdmapped,
  mountOverlay,
  parseIdMap,
  probeIdmappedOverlay,
  removeMountPoint,
  unmountOverlay,
} from '.';
import { tempDir } from '../test-support/tree';

jest.setTimeout(60_000);

const map = parseIdMap('100000:65536');
let scratch: string;
beforeAll(async () => {
  scratch = await tempDir();
});
afterAll(async () => {
  for (const m of await listMountsUnder(scratch)) {
    await unmountOverlay(m.target, { lazy: true });
  }
  await rm(scratch, { recursive: true, force: true });
});

/** Runs a shell command in `cwd` as host uid/gid (what a step's root is on the host). */
function asHost(uid: number, gid: number, cwd: string, script: string): void {
  execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', 'sh', '-c', script], {
    cwd,
  });
}

describe('parseIdMap', () => {
  it('reads uid:count and uid:gid:count and refuses ranges at 0, too small or malformed', () => {
    expect(parseIdMap('100000:65536')).toEqual({ uid: 100000, gid: 100000, count: 65536 });
    expect(parseIdMap('200000:300000:70000')).toEqual({ uid: 200000, gid: 300000, count: 70000 });
    expect(() => parseIdMap('0:65536')).toThrow(/must not start at 0/);
    expect(() => parseIdMap('100000:1000')).toThrow(/at least 65536/);
    expect(() => parseIdMap('100000')).toThrow(LayerError);
    expect(() => parseIdMap('a:b')).toThrow(/uid:count/);
    expect(() => parseIdMap('4294960000:65536')).toThrow(/largest/);
    expect(() => parseIdMap('4294960000:65536')).toThrow(LayerError);
  });
});

describe('idmapped overlay', () => {
  it('the probe passes on this host and leaves nothing mounted', async () => {
    const dir = join(scratch, 'probe');
    expect(await probeIdmappedOverlay(dir, map)).toBeNull();
    expect(await listMountsUnder(dir)).toEqual([]);
  });

  it('shows in-image owners shifted into the range, and writes of the range land on disk unshifted', async () => {
    const base = join(scratch, 'c1');
    const lower = join(base, 'lower');
    await mkdir(lower, { recursive: true });
    await writeFile(join(lower, 'rootfile'), 'r');
    await writeFile(join(lower, 'userfile'), 'u');
    await chown(join(lower, 'userfile'), 1000, 1000);
    await mkdir(join(base, 'c', 'upper'), { recursive: true });
    const merged = join(base, 'c', 'merged');
    await mountOverlay({
      lowerDirs: [lower],
      upperDir: join(base, 'c', 'upper'),
      workDir: join(base, 'c', 'work'),
      target: merged,
      volatile: true,
      idmap: map,
    });
    // only the overlay is left mounted: the idmapped attachments were detached
    expect((await listMountsUnder(base)).map((m) => m.fsType)).toEqual(['overlay']);
    expect((await stat(join(merged, 'rootfile'))).uid).toBe(100000);
    expect((await stat(join(merged, 'userfile'))).uid).toBe(101000);
    // as the range's root: a new file and a deletion; as the host's root, a chown to the range's 1000 and a setuid bit
    asHost(100000, 100000, merged, 'echo n > new && echo s > suid && rm rootfile');
    execFileSync('sh', ['-c', 'chown 101000:101000 suid && chmod 4755 suid'], { cwd: merged });
    const upper = join(base, 'c', 'upper');
    const created = await stat(join(upper, 'new'));
    expect([created.uid, created.gid]).toEqual([0, 0]);
    const suid = await stat(join(upper, 'suid'));
    expect([suid.uid, suid.gid, suid.mode & 0o7777]).toEqual([1000, 1000, 0o4755]);
    const whiteout = await lstat(join(upper, 'rootfile'));
    expect(whiteout.isCharacterDevice()).toBe(true);
    // host root, outside the range, cannot write through it (its uid has no mapping there)
    expect(() => execFileSync('touch', [join(merged, 'byroot')], { stdio: 'ignore' })).toThrow();
    expect((await unmountOverlay(merged)).unmounted).toBe(true);
    expect(await listMountsUnder(base)).toEqual([]);
  });

  it('mountIdmapped shows a directory and a file shifted until removeMountPoint', async () => {
    const base = join(scratch, 'binds');
    await mkdir(join(base, 'src'), { recursive: true });
    await writeFile(join(base, 'src', 'f'), 'x');
    await chown(join(base, 'src', 'f'), 1000, 1000);
    await writeFile(join(base, 'secret'), 's');
    await mkdir(join(base, 'dir-view'));
    await writeFile(join(base, 'file-view'), '');
    await mountIdmapped(map, [
      [join(base, 'src'), join(base, 'dir-view')],
      [join(base, 'secret'), join(base, 'file-view')],
    ]);
    expect((await stat(join(base, 'dir-view', 'f'))).uid).toBe(101000);
    expect((await stat(join(base, 'file-view'))).uid).toBe(100000);
    await removeMountPoint(join(base, 'dir-view'));
    await removeMountPoint(join(base, 'file-view'));
    expect(await listMountsUnder(base)).toEqual([]);
    expect((await stat(join(base, 'src', 'f'))).uid).toBe(1000);
  });

  it('a source that does not exist fails naming it and attaches nothing', async () => {
    const base = join(scratch, 'bad');
    await mkdir(join(base, 'a'), { recursive: true });
    await mkdir(join(base, 'b'), { recursive: true });
    await mkdir(join(base, 'src'), { recursive: true });
    await expect(
      mountIdmapped(map, [
        [join(base, 'src'), join(base, 'a')],
        [join(base, 'missing'), join(base, 'b')],
      ]),
    ).rejects.toThrow(/open_tree .*missing/);
    expect(await listMountsUnder(base)).toEqual([]);
  });
});
