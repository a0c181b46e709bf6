// Where the worker keeps the OCI runtime's state and the bundles: a tmpfs dir of its own
// (runtimeDir), refused when someone else could have made or could write it; and the start-up
// sweep of a worker that kept them in its scratch dir before (a container left there is swept,
// the dirs become symlinks to the tmpfs ones). Real tmpfs mounts, real runc. Needs root.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StratumConfig } from '@stratum/config';
import { generateRuntimeSpec, RuncRuntime } from '@stratum/runtime';
import { FsBlobStore } from '@stratum/storage';
import { BUSYBOX_FIXTURE, mountsUnder } from '@stratum/testing';
import { chooseRuntimeDir, HostSweeper, workerPaths } from './host-sweeper';

const RUNC = '/usr/sbin/runc';
let work: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error('the host sweeper integration tests need root');
  }
  if (!existsSync(RUNC)) {
    throw new Error(`no runc at ${RUNC} (Debian package runc; infra/test.sh installs it)`);
  }
  work = await mkdtemp(join(tmpdir(), 'stratum-host-sweeper-'));
});
afterAll(async () => {
  for (const m of mountsUnder(work).sort().reverse()) {
    execFileSync('umount', [m]);
  }
  await rm(work, { recursive: true, force: true });
});

function tmpfsAt(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  return dir;
}

describe('runtimeDir', () => {
  it('takes the first tmpfs of the bases, makes its dirs 0700, and is the same for the same scratch dir', () => {
    const disk = join(work, 'on-disk');
    mkdirSync(disk);
    const ram = tmpfsAt('ram');
    const dir = chooseRuntimeDir('w1', '/data/worker/w1', [disk, ram]);
    expect(dir).toMatch(new RegExp(`^${ram}/stratum/w1-[0-9a-f]{12}$`));
    for (const d of [join(ram, 'stratum'), dir as string]) {
      const st = lstatSync(d);
      expect(st.isDirectory()).toBe(true);
      expect(st.uid).toBe(0);
      expect(st.mode & 0o7777).toBe(0o700);
    }
    expect(readFileSync(join(dir as string, 'scratch'), 'utf8')).toBe('/data/worker/w1\n'); // for a later sweep
    expect(existsSync(join(disk, 'stratum'))).toBe(false); // not a tmpfs: not used
    expect(chooseRuntimeDir('w1', '/data/worker/w1', [ram])).toBe(dir);
    expect(chooseRuntimeDir('w1', '/other/worker/w1', [ram])).not.toBe(dir);
    expect(chooseRuntimeDir('w1', '/data/worker/w1', [disk])).toBeNull();
  });

  it('refuses a stratum dir someone else made or can write (the state then stays on disk)', () => {
    const writable = tmpfsAt('writable');
    mkdirSync(join(writable, 'stratum'), { mode: 0o777 });
    execFileSync('chmod', ['0777', join(writable, 'stratum')]);
    expect(chooseRuntimeDir('w1', '/data/worker/w1', [writable])).toBeNull();

    const foreign = tmpfsAt('foreign');
    mkdirSync(join(foreign, 'stratum'), { mode: 0o700 });
    chownSync(join(foreign, 'stratum'), 1000, 1000);
    expect(chooseRuntimeDir('w1', '/data/worker/w1', [foreign])).toBeNull();

    const linked = tmpfsAt('linked');
    const elsewhere = join(work, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, join(linked, 'stratum'));
    expect(chooseRuntimeDir('w1', '/data/worker/w1', [linked])).toBeNull();
    expect(existsSync(join(elsewhere, 'w1'))).toBe(false);
  });
});

it('the start-up sweep removes a container an older worker left in its scratch dir and links the dirs to the tmpfs ones', async () => {
  const dataDir = join(work, 'data');
  const scratch = join(dataDir, 'worker', 'it-sweeper');
  const config = {
    dataDir,
    runtimePath: RUNC,
    worker: { id: 'it-sweeper', scratchDir: scratch },
  } as unknown as StratumConfig;
  const paths = workerPaths(config);
  expect(paths.run).not.toBeNull(); // this host has /run or /dev/shm on a tmpfs
  try {
    // the old layout: runc's root and the bundles in the scratch dir, a container created there
    const legacyRoot = join(scratch, 'runc');
    const legacyBundles = join(scratch, 'bundles');
    const bundle = join(legacyBundles, 'leftover');
    mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    const tarball = join(work, 'busybox.tar');
    execFileSync(BUSYBOX_FIXTURE, [tarball], { stdio: 'ignore' });
    execFileSync('tar', ['-xf', tarball, '-C', join(bundle, 'rootfs')]);
    const spec = generateRuntimeSpec({
      rootfs: join(bundle, 'rootfs'),
      args: ['sleep', '60'],
      cgroupsPath: '/stratum-it-host-sweeper/leftover',
      nofile: { soft: 1024, hard: 1024 },
    });
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    const created = spawnSync(RUNC, ['--root', legacyRoot, 'create', '--bundle', bundle, 'leftover'], {
      stdio: 'ignore',
      timeout: 20_000,
    });
    expect(created.status).toBe(0);

    // dirs of other workers beside it: one whose data dir is gone (removed at start-up), one
    // whose data dir is there, one that still names a container, one that names no scratch dir
    const top = join(paths.run as string, '..');
    const sibling = (name: string, scratchDir: string | null, container = false): string => {
      const dir = join(top, name);
      mkdirSync(join(dir, 'runc', container ? 'c1' : ''), { recursive: true });
      if (scratchDir !== null) {
        writeFileSync(join(dir, 'scratch'), `${scratchDir}\n`);
      }
      return dir;
    };
    const gone = sibling('it-gone-000000000000', join(work, 'removed-data', 'worker', 'x'));
    const alive = sibling('it-alive-000000000000', work);
    const busy = sibling('it-busy-000000000000', join(work, 'removed-data', 'worker', 'y'), true);
    const unnamed = sibling('it-unnamed-000000000000', null);

    const blobs = new FsBlobStore(join(dataDir, 'store'));
    await blobs.init();
    const runtime = new RuncRuntime({ runcPath: RUNC, stateRoot: paths.runcRoot, bundleDir: paths.bundles });
    const report = await new HostSweeper(config, runtime, blobs).sweep();

    expect(report.containers).toBe(1);
    expect(readlinkSync(legacyRoot)).toBe(paths.runcRoot);
    expect(readlinkSync(legacyBundles)).toBe(paths.bundles);
    // runc through the link sees the new, empty root; the old container is gone with its bundle
    expect(execFileSync(RUNC, ['--root', legacyRoot, 'list', '-q'], { encoding: 'utf8' }).trim()).toBe('');
    expect(existsSync(bundle)).toBe(false);
    expect(readFileSync(join(paths.run as string, 'scratch'), 'utf8')).toBe(`${scratch}\n`);
    expect([gone, alive, busy, unnamed].map((d) => existsSync(d))).toEqual([false, true, true, true]);
    for (const d of [alive, busy, unnamed]) {
      await rm(d, { recursive: true, force: true });
    }
    // a second start-up keeps the links
    expect((await new HostSweeper(config, runtime, blobs).sweep()).containers).toBe(0);
    expect(readlinkSync(legacyRoot)).toBe(paths.runcRoot);
  } finally {
    spawnSync(RUNC, ['--root', join(scratch, 'runc'), 'delete', '--force', 'leftover'], { stdio: 'ignore' });
    await rm(paths.run as string, { recursive: true, force: true });
  }
});
