// RuncRuntime with `userns` on an overlay over idmapped layers (what a RUN step gets with
// USERNS_REMAP): each network mode's /sys, a bind from a noexec tmpfs, owners on disk. Needs root.
import { defaultRuntimePath } from '@stratum/config';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { listMountsUnder, mountOverlay, parseIdMap, unmountOverlay } from '@stratum/layers';
import { BUSYBOX_FIXTURE } from '@stratum/testing';
import { CollectedRun, runCollected } from '../test-support/run-collected';
import { RuncRuntime, type RunOptions } from './runc-runtime';

jest.setTimeout(60_000);

// the runtime a worker runs with by default (crun when installed, as infra/lib.sh installs it)
const RUNC = defaultRuntimePath();
const map = parseIdMap('100000:65536');
const CGROUP_PARENT = `/stratum-test-userns-${process.pid}`;
let work: string;
let lower: string;
let runtime: RuncRuntime;
let bundleDir: string;
let seq = 0;

beforeAll(async () => {
  if (!existsSync(RUNC)) {
    throw new Error(`no OCI runtime at ${RUNC} (Debian package crun or runc)`);
  }
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'stratum-runc-userns-'));
  // runc sets the container up from inside its namespace: the way to the rootfs must let it pass
  await fs.chmod(work, 0o711);
  const tarball = path.join(work, 'busybox.tar');
  execFileSync(BUSYBOX_FIXTURE, [tarball], { stdio: 'ignore' });
  lower = path.join(work, 'lower');
  await fs.mkdir(lower);
  execFileSync('tar', ['-xf', tarball, '-C', lower]);
  bundleDir = path.join(work, 'bundles');
  runtime = new RuncRuntime({
    runcPath: RUNC,
    stateRoot: path.join(work, 'state'),
    bundleDir,
    cgroupParent: CGROUP_PARENT,
  });
});

afterAll(async () => {
  await runtime?.closeSpare();
  for (const controller of readdirSync('/sys/fs/cgroup')) {
    await fs.rmdir(path.join('/sys/fs/cgroup', controller, CGROUP_PARENT)).catch(() => undefined);
  }
  for (const m of await listMountsUnder(work)) {
    await unmountOverlay(m.target, { lazy: true });
  }
  await fs.rm(work, { recursive: true, force: true });
});

/** A fresh idmapped container filesystem on the busybox layer; returns its dirs. */
async function container(): Promise<{ dir: string; upper: string; merged: string }> {
  const dir = path.join(work, `c${++seq}`);
  const c = { dir, upper: path.join(dir, 'upper'), merged: path.join(dir, 'merged') };
  await fs.mkdir(c.upper, { recursive: true });
  await mountOverlay({
    lowerDirs: [lower],
    upperDir: c.upper,
    workDir: path.join(dir, 'work'),
    target: c.merged,
    idmap: map,
  });
  return c;
}

async function run(rootfs: string, script: string, options: Partial<RunOptions> = {}): Promise<CollectedRun> {
  const r = await runCollected(runtime, `u${process.pid}-${seq}`, {
    rootfs,
    args: ['/bin/sh', '-c', script],
    userns: map,
    ...options,
  });
  await unmountOverlay(rootfs);
  return r;
}

afterEach(() => {
  expect(existsSync(bundleDir) ? readdirSync(bundleDir).filter((n) => !n.startsWith('spare-')) : []).toEqual(
    [],
  );
});

it("network none: root in the step, the range's root on the host; what it writes keeps its owner on disk", async () => {
  const c = await container();
  const r = await run(
    c.merged,
    'id -u; cat /proc/self/uid_map; ls /sys/class/net; echo x > /made; chown 1000:1000 /made',
    {
      network: 'none',
    },
  );
  expect({ code: r.exitCode, err: r.stderr }).toEqual({ code: 0, err: '' });
  expect(r.stdout.split('\n')[0]).toBe('0');
  expect(r.stdout).toMatch(/^\s*0\s+100000\s+65536$/m);
  expect(r.stdout).toMatch(/^lo$/m);
  const made = await fs.stat(path.join(c.upper, 'made'));
  expect([made.uid, made.gid]).toEqual([1000, 1000]);
});

it("network sandbox: /etc/hosts and resolv.conf are root's, /sys shows the sandbox (lo, tap0), mounted in its namespace and gone after", async () => {
  const c = await container();
  const r = await run(
    c.merged,
    'stat -c %u:%g /etc/hosts /etc/resolv.conf | tr "\\n" " "; ls /sys/class/net | tr "\\n" " "; ping -c1 -W3 10.0.2.2 >/dev/null 2>&1; echo ping=$?',
    {
      network: 'sandbox',
    },
  );
  expect({ code: r.exitCode, err: r.stderr }).toEqual({ code: 0, err: '' });
  expect(r.stdout).toMatch(/^0:0 0:0 lo tap0 /);
  expect((await listMountsUnder(bundleDir)).filter((m) => m.fsType === 'sysfs')).toEqual([]);
});

it('network host: the host /sys, bound read-only', async () => {
  const c = await container();
  const hostIfaces = readdirSync('/sys/class/net').sort();
  const r = await run(c.merged, 'ls /sys/class/net; touch /sys/x 2>/dev/null && echo wrote; true', {
    network: 'host',
  });
  expect({ code: r.exitCode, out: r.stdout, err: r.stderr }).toEqual({
    code: 0,
    out: expect.any(String),
    err: '',
  });
  expect(r.stdout.trim().split('\n').sort()).toEqual(hostIfaces);
});

it('a read-only bind from a noexec,nosuid,nodev tmpfs (a secret) mounts: its locked flags are kept', async () => {
  const c = await container();
  const tmp = path.join(work, 'secrets');
  await fs.mkdir(tmp);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0711,nosuid,nodev,noexec', 'tmpfs', tmp]);
  try {
    await fs.writeFile(path.join(tmp, 's'), 'value', { mode: 0o444 });
    const r = await run(c.merged, 'cat /run/s', {
      network: 'none',
      mounts: [{ source: path.join(tmp, 's'), destination: '/run/s', readonly: true }],
    });
    expect({ code: r.exitCode, out: r.stdout, err: r.stderr }).toEqual({ code: 0, out: 'value', err: '' });
  } finally {
    execFileSync('umount', [tmp]);
  }
});
