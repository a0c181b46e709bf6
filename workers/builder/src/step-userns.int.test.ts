import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StratumConfig } from '@stratum/config';
import { listMountsUnder } from '@stratum/layers';
import { WorkerPaths } from './host-sweeper';
import { StepUserns } from './step-userns';

jest.setTimeout(60_000);

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'stratum-step-userns-'));
});
afterAll(async () => {
  for (const m of await listMountsUnder(root)) {
    execFileSync('umount', ['-l', m.target]);
  }
  await rm(root, { recursive: true, force: true });
});

function setup(name: string, usernsRemap: string): { config: StratumConfig; paths: WorkerPaths } {
  const scratch = join(root, name, 'worker');
  const paths: WorkerPaths = {
    scratch,
    run: null,
    runcRoot: join(scratch, 'runc'),
    bundles: join(scratch, 'bundles'),
    jobs: join(scratch, 'jobs'),
    layerCache: join(root, name, 'layer-cache'),
    runCache: join(root, name, 'run-cache'),
  };
  // only what StepUserns reads
  return { config: { usernsRemap } as unknown as StratumConfig, paths };
}

it('a named range is probed and used; the way to the steps is made searchable (not readable) by everyone', async () => {
  const { config, paths } = setup('named', '200000:70000');
  const userns = await StepUserns.detect(config, paths);
  expect(userns.map).toEqual({ uid: 200000, gid: 200000, count: 70000 });
  for (const dir of [paths.jobs, paths.bundles, root]) {
    expect((await stat(dir)).mode & 0o001).toBe(0o001);
  }
  // the test's mkdtemp root was 0700: searchable now, still not listable
  expect((await stat(root)).mode & 0o777).toBe(0o701);
  expect(await listMountsUnder(root)).toEqual([]);
});

it('auto uses 100000:65536 on this host; off turns it off', async () => {
  const auto = setup('auto', 'auto');
  expect((await StepUserns.detect(auto.config, auto.paths)).map).toEqual({
    uid: 100000,
    gid: 100000,
    count: 65536,
  });
  const off = setup('off', 'off');
  expect((await StepUserns.detect(off.config, off.paths)).map).toBeNull();
});

it('on a filesystem without idmapped mounts (ramfs): a named range fails the boot with the reason, auto falls back to off', async () => {
  const ram = join(root, 'ram');
  execFileSync('mkdir', ['-p', ram]);
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', ram]);
  try {
    const named: WorkerPaths = { ...setup('x', '').paths, scratch: join(ram, 'worker') };
    await expect(
      StepUserns.detect({ usernsRemap: '100000:65536' } as unknown as StratumConfig, named),
    ).rejects.toThrow(
      /^USERNS_REMAP=100000:65536: this host cannot run RUN steps in a user namespace \(.*\): mounting an idmapped overlay at .*: OSError: \[Errno 22\] mount_setattr \(idmap\) .*: Invalid argument$/,
    );
    expect(
      (await StepUserns.detect({ usernsRemap: 'auto' } as unknown as StratumConfig, named)).map,
    ).toBeNull();
    await expect(
      StepUserns.detect({ usernsRemap: '0:65536' } as unknown as StratumConfig, named),
    ).rejects.toThrow(/must not start at 0/);
  } finally {
    execFileSync('umount', [ram]);
  }
});
