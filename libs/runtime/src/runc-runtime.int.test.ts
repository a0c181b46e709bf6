import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { detectMemoryCgroup, hybridCgroup2Mounts } from './cgroups';
import {
  cgroupSlotPrefix,
  hiddenMountFailure,
  RuncRuntime,
  withHiddenMounts,
  type RunIo,
  type RunOptions,
} from './runc-runtime';
import { RuntimeError } from './runtime-error';
import { generateRuntimeSpec } from './runtime-spec';
import { execHelper } from '@stratum/layers';
import { BUSYBOX_FIXTURE } from '@stratum/testing';
import { CollectedRun, runCollected } from '../test-support/run-collected';

// Real runc and real crun (each runs every test) against a busybox rootfs made by the shared
// fixture script. Needs root.
const RUNTIMES = [
  ['runc', '/usr/sbin/runc'],
  ['crun', '/usr/bin/crun'],
] as const;
const FIXTURE = BUSYBOX_FIXTURE;
// Never skipped: on a machine without root, runc or crun these fail, naming what is missing.
function requireRunc(RUNC: string, name: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the runc integration tests need root');
  }
  if (!existsSync(RUNC)) {
    throw new Error(`no ${name} at ${RUNC} (Debian package ${name}; infra/test.sh installs it)`);
  }
  if (!existsSync(FIXTURE)) {
    throw new Error(`no fixture script ${FIXTURE}`);
  }
}

/** Children of the worker's exec helper that ended and were not reaped (`pid:comm`). */
function helperZombies(): string[] {
  const helper = execHelper.pid;
  if (helper === undefined) {
    return [];
  }
  const zombies: string[] = [];
  // a thread (a request's) or a child may end while we look: what is gone is no zombie
  const read = (file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  for (const task of readdirSync(`/proc/${helper}/task`)) {
    for (const pid of read(`/proc/${helper}/task/${task}/children`).split(' ')) {
      const stat = read(`/proc/${pid.trim()}/stat`);
      if (pid.trim() !== '' && stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) {
        zombies.push(`${pid.trim()}:${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}`);
      }
    }
  }
  return zombies;
}

// cgroup parent unique to this test process, removed at the end
const CGROUP_PARENT = `/stratum-test-${process.pid}`;

describe.each(RUNTIMES)('RuncRuntime (real %s)', (name, RUNC) => {
  let work: string;
  let tarball: string;
  let rootfs: string; // shared, for runs that write nothing that matters
  let runtime: RuncRuntime;
  let stateRoot: string;
  let bundleDir: string;
  let seq = 0;

  async function freshRootfs(): Promise<string> {
    const dir = await fs.mkdtemp(path.join(work, 'rootfs-'));
    execFileSync('tar', ['-xf', tarball, '-C', dir]);
    // mkdtemp makes it 0700, which would keep non-root users out of their own /
    await fs.chmod(dir, 0o755);
    return dir;
  }

  type Outcome = CollectedRun;

  const run = (
    args: string[],
    options: Partial<RunOptions> = {},
    io: Partial<RunIo> = {},
  ): Promise<Outcome> =>
    runCollected(runtime, `t${process.pid}-${++seq}`, { rootfs, args, ...options }, { ...io });

  beforeAll(async () => {
    requireRunc(RUNC, name);
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'stratum-runtime-'));
    tarball = path.join(work, 'busybox.tar');
    execFileSync(FIXTURE, [tarball], { stdio: 'ignore' });
    rootfs = await freshRootfs();
    stateRoot = path.join(work, 'state');
    bundleDir = path.join(work, 'bundles');
    runtime = new RuncRuntime({
      runcPath: RUNC,
      stateRoot,
      bundleDir,
      cgroupParent: CGROUP_PARENT,
      killGraceMs: 5000,
    });
  }, 60_000);

  afterEach(async () => {
    // every run must leave no runc state and no bundle behind
    expect(await runtime.list()).toEqual([]);
    expect(existsSync(bundleDir) ? readdirSync(bundleDir) : []).toEqual([]);
    // nor an unreaped process under the exec helper (with crun a child subreaper: the detached
    // run's init and crun's monitor above it become its children)
    expect(helperZombies()).toEqual([]);
  });

  afterAll(async () => {
    if (runtime) {
      await runtime.sweep();
    }
    for (const controller of readdirSync('/sys/fs/cgroup')) {
      await fs.rmdir(path.join('/sys/fs/cgroup', controller, CGROUP_PARENT)).catch(() => undefined);
    }
    if (work) {
      await fs.rm(work, { recursive: true, force: true });
    }
  });

  it('streams stdout and stderr separately', async () => {
    const r = await run(['sh', '-c', 'echo out; echo err >&2; echo out2']);
    expect(r).toMatchObject({ exitCode: 0, signal: null, timedOut: false, cancelled: false });
    expect(r.stdout).toBe('out\nout2\n');
    expect(r.stderr).toBe('err\n');
  });

  it('reports exit codes', async () => {
    expect((await run(['true'])).exitCode).toBe(0);
    expect((await run(['sh', '-c', 'exit 3'])).exitCode).toBe(3);
  });

  it('applies env, cwd and a default PATH and HOME', async () => {
    const r = await run(['sh', '-c', 'echo "$FOO|$(pwd)|$PATH|$HOME"'], {
      env: { FOO: 'bar baz' },
      cwd: '/tmp',
    });
    expect(r.stdout.trim()).toBe(
      'bar baz|/tmp|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root',
    );
  });

  it('pipes stdin', async () => {
    const r = await run(['cat'], {}, { stdin: Readable.from([Buffer.from('hello '), Buffer.from('stdin')]) });
    expect(r.stdout).toBe('hello stdin');
  });

  it('runs as numeric and named users', async () => {
    const numeric = await run(['id'], { user: '65534:65534' });
    expect(numeric.stdout.trim()).toBe('uid=65534(nobody) gid=65534(nogroup)');
    const named = await run(['sh', '-c', 'id -u; id -g; echo $HOME'], { user: 'nobody' });
    expect(named.stdout.split('\n')).toEqual(['65534', '65534', '/', '']);
    const noEntry = await run(['id', '-u'], { user: '4242' });
    expect(noEntry.stdout.trim()).toBe('4242');
    await expect(run(['id'], { user: 'nosuchuser' })).rejects.toMatchObject({ reason: 'USER_UNKNOWN' });
  });

  it('writes land in the rootfs dir and mount-point stubs are removed', async () => {
    const own = await freshRootfs();
    const cache = await fs.mkdtemp(path.join(work, 'cache-'));
    await fs.rm(path.join(own, 'proc'), { recursive: true });
    const r = await run(['sh', '-c', 'echo hi > /root/x && mkdir -p /var/lib/y && echo c > /cache/dir/f'], {
      rootfs: own,
      network: 'host',
      mounts: [{ source: cache, destination: '/cache/dir' }],
    });
    expect(r.exitCode).toBe(0);
    expect(await fs.readFile(path.join(own, 'root/x'), 'utf8')).toBe('hi\n');
    expect(existsSync(path.join(own, 'var/lib/y'))).toBe(true);
    expect(await fs.readFile(path.join(cache, 'f'), 'utf8')).toBe('c\n');
    // runc had to create these to mount on; none may end up in a layer
    for (const stub of ['proc', 'cache', 'etc/resolv.conf', 'etc/hosts']) {
      expect([stub, existsSync(path.join(own, stub))]).toEqual([stub, false]);
    }
    expect(existsSync(path.join(own, 'etc/passwd'))).toBe(true);
  });

  it('read-only bind mounts are read-only', async () => {
    const secret = await fs.mkdtemp(path.join(work, 'secret-'));
    await fs.writeFile(path.join(secret, 's'), 'top');
    const r = await run(['sh', '-c', 'cat /run/secrets/s; echo x > /run/secrets/s'], {
      mounts: [{ source: secret, destination: '/run/secrets', readonly: true }],
    });
    expect(r.stdout).toBe('top');
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it("network 'none' has only lo, 'host' sees the host's interfaces", async () => {
    const none = await run(['ls', '/sys/class/net']);
    expect(none.stdout.split(/\s+/).filter(Boolean)).toEqual(['lo']);
    const host = await run(['ls', '/sys/class/net'], { network: 'host' });
    expect(host.stdout.split(/\s+/).filter(Boolean).sort()).toEqual(readdirSync('/sys/class/net').sort());
  });

  it('sees only its own processes', async () => {
    const r = await run(['sh', '-c', 'echo $$; ls /proc | grep -E "^[0-9]+$" | wc -l']);
    const [pid, count] = r.stdout.trim().split('\n').map(Number);
    expect(pid).toBe(1);
    expect(count).toBeLessThanOrEqual(4); // sh, ls, grep, wc
  });

  it("mounts /sys read-only and masks Docker's masked paths", async () => {
    const r = await run([
      'sh',
      '-c',
      'grep " /sys " /proc/mounts; mkdir /sys/stratum-x && echo WROTE; wc -c < /proc/timer_list; ls /sys/firmware | wc -l',
    ]);
    expect(r.stdout).toMatch(/^sysfs \/sys sysfs ro,/m);
    expect(r.stdout).not.toMatch(/WROTE/);
    expect(r.stderr).toMatch(/Read-only file system/);
    // on the host both have content (checked to keep the assertion meaningful)
    expect(readdirSync('/sys/firmware').length).toBeGreaterThan(0);
    expect(r.stdout.trim().split('\n').slice(-2)).toEqual(['0', '0']);
  });

  it("has Docker's default capabilities (none for a non-root user)", async () => {
    const root = await run(['grep', 'Cap', '/proc/self/status']);
    expect(root.stdout).toMatch(/^CapEff:\s+00000000a80425fb$/m);
    expect(root.stdout).toMatch(/^CapBnd:\s+00000000a80425fb$/m);
    expect(root.stdout).toMatch(/^CapInh:\s+0{16}$/m);
    const nobody = await run(['grep', 'CapEff', '/proc/self/status'], { user: 'nobody' });
    expect(nobody.stdout).toMatch(/^CapEff:\s+0{16}$/m);
  });

  it('sets no_new_privs when asked', async () => {
    const off = await run(['grep', 'NoNewPrivs', '/proc/self/status']);
    const on = await run(['grep', 'NoNewPrivs', '/proc/self/status'], { noNewPrivileges: true });
    expect(off.stdout).toMatch(/NoNewPrivs:\s+0/);
    expect(on.stdout).toMatch(/NoNewPrivs:\s+1/);
  });

  it("filters syscalls with Docker's default seccomp profile (or stricter); unconfined only when asked", async () => {
    const probe = [
      'sh',
      '-c',
      [
        'grep Seccomp: /proc/self/status',
        'unshare -U true && echo userns-made || echo userns-refused',
        'unshare -m true && echo mountns-made || echo mountns-refused',
        'mkdir -p /mnt/t && (mount -t tmpfs none /mnt/t && echo mounted || echo mount-refused)',
        // clone(2) with namespace flags, not only unshare(2)
        'nsenter --help >/dev/null 2>&1; echo done',
      ].join('; '),
    ];
    // a runtime of its own: its first run compiles the profile; crun's later runs are given
    // the filter it compiled then (run.oci.seccomp_bpf_data), which must filter the same
    const fresh = new RuncRuntime({ runcPath: RUNC, stateRoot, bundleDir, cgroupParent: CGROUP_PARENT });
    for (let i = 0; i < 2; i++) {
      const filtered = await runCollected(fresh, `t${process.pid}-${++seq}`, { rootfs, args: probe }, {});
      expect(filtered.stdout).toMatch(/Seccomp:\s+2/);
      expect(filtered.stdout).toContain('userns-refused');
      expect(filtered.stdout).toContain('mountns-refused');
      expect(filtered.stdout).toContain('mount-refused');
      expect(filtered.stderr).toMatch(/Operation not permitted/);
    }
    // the same process without the filter: it is the filter that refuses a user namespace
    const open = new RuncRuntime({
      runcPath: RUNC,
      stateRoot,
      bundleDir,
      cgroupParent: CGROUP_PARENT,
      seccompProfile: null,
    });
    const unfiltered = await runCollected(open, `t${process.pid}-${++seq}`, { rootfs, args: probe }, {});
    expect(unfiltered.stdout).toMatch(/Seccomp:\s+0/);
    // Where this process itself may make a user namespace, so may the unfiltered step. In a
    // chroot (the fresh-root check runs the suite in one) the kernel refuses it to everyone.
    const hostUserns = spawnSync('unshare', ['-U', 'true']).status === 0;
    expect(unfiltered.stdout).toContain(hostUserns ? 'userns-made' : 'userns-refused');
    // everyday work is untouched: processes, pipes, files, signals
    const work = await run(['sh', '-c', 'echo a | sort; (sleep 5 & kill $!); touch /tmp/x && ls /tmp/x']);
    expect(work).toMatchObject({ exitCode: 0, stdout: 'a\n/tmp/x\n' });
  });

  it('warmUp runs a throwaway container; with crun the first run after it is given the compiled filter', async () => {
    const fresh = new RuncRuntime({ runcPath: RUNC, stateRoot, bundleDir, cgroupParent: CGROUP_PARENT });
    await fresh.warmUp();
    const id = `t${process.pid}-${++seq}`;
    let annotations: Record<string, string> | undefined;
    const r = await runCollected(
      fresh,
      id,
      { rootfs, args: ['sh', '-c', 'grep Seccomp: /proc/self/status'] },
      {
        // the bundle while the container runs: what the runtime gave it
        onStarted: () => {
          const spec = JSON.parse(readFileSync(path.join(bundleDir, id, 'config.json'), 'utf8')) as {
            annotations?: Record<string, string>;
          };
          annotations = spec.annotations ?? {};
        },
      },
    );
    expect(r.stdout).toMatch(/Seccomp:\s+2/);
    expect(annotations).toBeDefined();
    if (name === 'crun') {
      expect(annotations?.['run.oci.seccomp_bpf_data']).toMatch(/^[A-Za-z0-9+/]+=*$/);
    } else {
      expect(annotations?.['run.oci.seccomp_bpf_data']).toBeUndefined(); // runc: nothing to give
    }
    // it left nothing behind
    expect(readdirSync(bundleDir).filter((n) => n.startsWith('warmup-'))).toEqual([]);
  });

  it('a missing seccomp profile fails the run naming the file and the package', async () => {
    const broken = new RuncRuntime({
      runcPath: RUNC,
      stateRoot,
      bundleDir,
      cgroupParent: CGROUP_PARENT,
      seccompProfile: path.join(work, 'no-such-profile.json'),
    });
    await expect(
      broken.run(
        't-missing-profile',
        { rootfs, args: ['true'] },
        { onStdout: () => undefined, onStderr: () => undefined },
      ),
    ).rejects.toThrow(/no-such-profile\.json cannot be read.*golang-github-containers-common/);
  });

  it('a pids limit stops a fork loop and the run still ends', async () => {
    const r = await run(
      // busybox sh gives up on a failed fork, so the loop runs in a subshell
      ['sh', '-c', '(i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done); echo loop done'],
      { pidsLimit: 32 },
      { timeoutMs: 20_000 },
    );
    expect(r.timedOut).toBe(false);
    expect(r.stdout).toBe('loop done\n');
    expect(r.stderr).toMatch(/can't fork/);
  }, 30_000);

  it('a memory limit kills a memory hog', async () => {
    const layout = await detectMemoryCgroup();
    if (layout === null) {
      console.warn('memory limit test skipped: no memory cgroup controller on this host');
      return;
    }
    const r = await run(
      ['sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived ${#x}'],
      { memoryBytes: 32 * 1024 * 1024 },
      { timeoutMs: 30_000 },
    );
    expect(r.timedOut).toBe(false);
    expect(r.stdout).not.toMatch(/survived 200000000/);
    expect(r.exitCode === 137 || r.oomKilled === true).toBe(true);
    expect(r.oomKilled).toBe(true);
  }, 40_000);

  it('oomKilled is false for a run that stays under its memory limit', async () => {
    const r = await run(['true'], { memoryBytes: 64 * 1024 * 1024 });
    expect(r).toMatchObject({ exitCode: 0, oomKilled: false });
  });

  it('a timeout kills `sleep 60` within ~2 s', async () => {
    const r = await run(['sleep', '60'], {}, { timeoutMs: 500 });
    expect(r).toMatchObject({ timedOut: true, cancelled: false, exitCode: 137, signal: 'SIGKILL' });
    expect(r.ms).toBeLessThan(2500);
  });

  it('a timeout that fires while runc is still starting the container still kills it', async () => {
    const r = await run(['sleep', '60'], {}, { timeoutMs: 1 });
    expect(r.timedOut).toBe(true);
    expect(r.ms).toBeLessThan(3000);
  });

  it('an AbortSignal cancels the run', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const r = await run(['sh', '-c', 'sleep 60; echo never'], {}, { signal: controller.signal });
    expect(r).toMatchObject({ cancelled: true, timedOut: false });
    expect(r.stdout).toBe('');
    expect(r.ms).toBeLessThan(2500);
    const already = await run(['true'], {}, { signal: AbortSignal.abort() });
    expect(already).toMatchObject({ cancelled: true, exitCode: null });
  });

  it('an output sink that throws stops the container and rejects the run', async () => {
    const started = Date.now();
    const promise = runtime.run(
      `t${process.pid}-sink`,
      { rootfs, args: ['sh', '-c', 'echo boom; sleep 60'] },
      {
        onStdout: () => {
          throw new Error('sink broke');
        },
        onStderr: () => {},
      },
    );
    await expect(promise).rejects.toThrow('sink broke');
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('a start failure is a START_FAILED error and leaves nothing behind', async () => {
    const err: unknown = await run(['no-such-binary']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeError);
    expect(err).toMatchObject({ reason: 'START_FAILED', code: 'BAD_REQUEST' });
    expect((err as Error).message).toMatch(/no-such-binary.*not found/);
  });

  it('quick runs side by side each report their own exit code', async () => {
    // crun's init may end before the command that started it: reaped all the same, none lost
    // (each run its own rootfs, as each step has its own overlay: mount-point stubs are per rootfs)
    const roots = await Promise.all(Array.from({ length: 12 }, () => freshRootfs()));
    const codes = await Promise.all(
      roots.map((own, i) => run(['sh', '-c', `exit ${i}`], { rootfs: own }).then((r) => r.exitCode)),
    );
    expect(codes).toEqual(Array.from({ length: 12 }, (_, i) => i));
  });

  it('refuses a second run with an id in use', async () => {
    const first = runtime.run(
      'dup-id',
      { rootfs, args: ['sleep', '1'] },
      { onStdout: () => {}, onStderr: () => {} },
    );
    await expect(
      runtime.run('dup-id', { rootfs, args: ['true'] }, { onStdout: () => {}, onStderr: () => {} }),
    ).rejects.toMatchObject({ reason: 'CONTAINER_EXISTS' });
    expect((await first).exitCode).toBe(0);
  });

  it('runs one after another reuse a cgroup: the host keeps no memory cgroup per run', async () => {
    // a removed memory cgroup lingers while the page cache its run wrote stays cached
    const memoryCgroups = (): number =>
      Number(/^memory\s+\d+\s+(\d+)/m.exec(readFileSync('/proc/cgroups', 'utf8'))?.[1] ?? NaN);
    const own = await freshRootfs();
    const before = memoryCgroups();
    for (let i = 0; i < 8; i++) {
      const r = await run(
        ['sh', '-c', `mkdir /w${i} && for f in $(seq 1 50); do echo $f > /w${i}/$f; done`],
        {
          rootfs: own,
          memoryBytes: 256 * 1024 * 1024,
        },
      );
      expect(r).toMatchObject({ exitCode: 0, oomKilled: false });
    }
    expect(memoryCgroups() - before).toBeLessThanOrEqual(1);
    const layout = await detectMemoryCgroup();
    const memoryRoot = layout?.version === 2 ? layout.root : layout?.memoryMount;
    const slots = readdirSync(path.join(memoryRoot ?? '/sys/fs/cgroup/memory', CGROUP_PARENT), {
      withFileTypes: true,
    })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    // slots (as many as runs were at once), no cgroup named after a container
    expect(slots.length).toBeGreaterThan(0);
    expect(slots.filter((name) => !/^slot-[0-9a-f]{8}-\d+$/.test(name))).toEqual([]);
    await fs.rm(own, { recursive: true, force: true });
  });

  it('sweep removes a leftover container and stale bundle dirs', async () => {
    // what a crashed worker leaves: a created container, its bundle, a stray bundle dir
    const bundle = path.join(bundleDir, 'leftover');
    await fs.mkdir(bundle, { recursive: true });
    const spec = generateRuntimeSpec({
      rootfs,
      args: ['sleep', '60'],
      cgroupsPath: `${CGROUP_PARENT}/leftover`,
      nofile: { soft: 1024, hard: 1024 },
    });
    await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec));
    const [bin, ...args] = withHiddenMounts(
      [RUNC, '--root', stateRoot, 'create', '--bundle', bundle, 'leftover'],
      name === 'crun' ? await hybridCgroup2Mounts() : [],
      path.join(bundle, 'hide.failed'),
    );
    const created = spawnSync(bin, args, { stdio: 'ignore', timeout: 20_000 });
    expect(created.status).toBe(0);
    await fs.mkdir(path.join(bundleDir, 'stray'));
    expect(await runtime.list()).toEqual(['leftover']);

    const swept = await runtime.sweep();
    expect(swept.containers).toEqual(['leftover']);
    expect(swept.bundles).toEqual(['stray']); // delete() already took leftover's bundle
    expect(existsSync(bundle)).toBe(false);
    expect(await runtime.list()).toEqual([]);
    expect(await runtime.delete('leftover', { force: true })).toBe(false);
  });

  // its own cgroup (a worker from before cgroup slots) or one of this runtime's slots
  it.each([
    ['its own cgroup', (id: string) => `${CGROUP_PARENT}/${id}`],
    ['a cgroup slot', () => `${CGROUP_PARENT}/${cgroupSlotPrefix(stateRoot)}7`],
  ])(
    'sweep kills and removes a running container runc left in the state root, in %s (then upgraded to crun)',
    async (_, cgroupOf) => {
      const id = 'runc-left';
      const bundle = path.join(work, 'runc-left-bundle');
      await fs.mkdir(bundle, { recursive: true });
      const spec = generateRuntimeSpec({
        rootfs,
        args: ['sleep', '60'],
        cgroupsPath: cgroupOf(id),
        nofile: { soft: 1024, hard: 1024 },
      });
      await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec));
      const RUNC_ITSELF = RUNTIMES[0][1];
      for (const args of [
        ['create', '--bundle', bundle, id],
        ['start', id],
      ]) {
        expect(
          spawnSync(RUNC_ITSELF, ['--root', stateRoot, ...args], { stdio: 'ignore', timeout: 20_000 }).status,
        ).toBe(0);
      }
      const state = JSON.parse(readFileSync(path.join(stateRoot, id, 'state.json'), 'utf8')) as {
        init_process_pid: number;
        cgroup_paths: Record<string, string>;
      };
      const pid = state.init_process_pid;
      // `runc start` returns once the init is told to go: it execs sleep a moment later
      const cmdline = (): string =>
        existsSync(`/proc/${pid}`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      for (let i = 0; i < 100 && !cmdline().includes('sleep'); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(cmdline()).toContain('sleep');
      const cgroups = Object.values(state.cgroup_paths);
      expect(cgroups.length).toBeGreaterThan(0);

      const swept = await runtime.sweep();
      expect(swept.containers).toEqual([id]);
      const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
      expect(stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')).toBe(true);
      expect(existsSync(path.join(stateRoot, id))).toBe(false);
      expect(cgroups.filter((dir) => existsSync(dir))).toEqual([]);
      await fs.rm(bundle, { recursive: true, force: true });
    },
  );
});

describe('withHiddenMounts', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratum-hide-'));
  });
  afterAll(async () => {
    spawnSync('umount', ['-l', path.join(dir, 'mnt')]);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a mount it cannot detach fails the start with a message, not as the command exiting 125', async () => {
    const failed = path.join(dir, 'hide.failed');
    const marker = path.join(dir, 'ran');
    const notMounted = path.join(dir, 'not-a-mount');
    await fs.mkdir(notMounted);
    const [bin, ...args] = withHiddenMounts(['/bin/sh', '-c', `touch ${marker}`], [notMounted], failed);
    const r = spawnSync(bin, args, { stdio: 'ignore' });
    expect(r.status).toBe(125);
    expect(existsSync(marker)).toBe(false); // the command never ran
    expect(hiddenMountFailure(r.status, failed)).toBe(
      `cannot detach ${notMounted} before starting the OCI runtime (umount -l failed): the container did not start`,
    );
  });

  it("a command's own exit status 125 stays its own, and the mount is gone only inside", async () => {
    const failed = path.join(dir, 'hide2.failed');
    const mnt = path.join(dir, 'mnt');
    await fs.mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    await fs.writeFile(path.join(mnt, 'seen'), 'x');
    const [bin, ...args] = withHiddenMounts(
      ['/bin/sh', '-c', `test ! -e ${mnt}/seen && exit 125`],
      [mnt],
      failed,
    );
    const r = spawnSync(bin, args, { stdio: 'ignore' });
    expect(r.status).toBe(125);
    expect(hiddenMountFailure(r.status, failed)).toBeNull();
    expect(existsSync(path.join(mnt, 'seen'))).toBe(true); // still mounted outside
    expect(hiddenMountFailure(0, failed)).toBeNull();
  });
});
