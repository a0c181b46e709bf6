import { defaultRuntimePath } from '@stratum/config';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { execHelper } from '@stratum/layers';
import { BUSYBOX_FIXTURE } from '@stratum/testing';
import {
  cgroupSlotPrefix,
  RuncRuntime,
  type RuncRuntimeOptions,
  type RunIo,
  type RunOptions,
} from './runc-runtime';
import { hostIpv4Addresses, SandboxNetwork } from './sandbox-network';
import { CollectedRun, runCollected } from '../test-support/run-collected';

// Real runc, slirp4netns and iptables against a busybox rootfs. Test traffic goes only to this
// host's loopback, to its own addresses (refused inside the step's namespace, so it never
// leaves it) and to namespaces the test made.
// the runtime a worker runs with by default (crun when installed, as infra/lib.sh installs it)
const RUNC = defaultRuntimePath();
const TOOLS = ['/usr/bin/slirp4netns', '/usr/sbin/iptables-restore', '/usr/bin/unshare', RUNC];

function requireTools(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('the sandbox network tests need root');
  }
  for (const tool of TOOLS) {
    if (!existsSync(tool)) {
      throw new Error(`no ${tool} (infra/up.sh installs slirp4netns, iptables, util-linux and runc)`);
    }
  }
}

const CGROUP_PARENT = `/stratum-nettest-${process.pid}`;

/** Our direct children that are sandbox helpers (slirp4netns, the namespace's `cat`). */
function helperChildren(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      // started by the worker's exec helper (its child), or by this process
      const parent = ppid === process.pid || ppid === execHelper.pid;
      if (parent && ['slirp4netns', 'cat', 'unshare', 'sh', 'crun'].includes(comm)) {
        out.push(`${pid}:${comm}`);
      }
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** A TCP server on `host` that counts the connections it gets. */
async function listen(
  host: string,
): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server = net.createServer((socket) => {
    count++;
    socket.end('reached\n');
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections: () => count,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('sandbox network (real runc, slirp4netns, iptables)', () => {
  let work: string;
  let tarball: string;
  let rootfs: string;
  let runtime: RuncRuntime;
  let bundleDir: string;
  let seq = 0;

  type Outcome = CollectedRun;

  const run = (
    args: string[],
    options: Partial<RunOptions> = {},
    io: Partial<RunIo> = {},
  ): Promise<Outcome> =>
    runCollected(
      runtime,
      `n${process.pid}-${++seq}`,
      { rootfs, args, network: 'sandbox', ...options },
      { timeoutMs: 30_000, ...io },
    );

  /** A runtime over the test's bundle dir and cgroup parent, with its own runc state. */
  const runtimeWith = (state: string, extra: Partial<RuncRuntimeOptions> = {}): RuncRuntime =>
    new RuncRuntime({
      runcPath: RUNC,
      stateRoot: path.join(work, state),
      bundleDir,
      cgroupParent: CGROUP_PARENT,
      killGraceMs: 5000,
      ...extra,
    });

  /** The network namespace a sandboxed run on `rt` got (checked to have slirp's default route). */
  const netnsOf = async (rt: RuncRuntime, id: string, options: Partial<RunOptions> = {}): Promise<string> => {
    const r = await runCollected(
      rt,
      id,
      {
        rootfs,
        args: ['sh', '-c', 'readlink /proc/self/ns/net; ip -4 route | grep -c "^default via 10.0.2.2"'],
        network: 'sandbox',
        ...options,
      },
      { timeoutMs: 30_000 },
    );
    expect(r.exitCode).toBe(0);
    const [ns, routes] = r.stdout.trim().split('\n');
    expect(routes).toBe('1');
    return ns;
  };

  beforeAll(async () => {
    requireTools();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'stratum-sandbox-'));
    tarball = path.join(work, 'busybox.tar');
    execFileSync(BUSYBOX_FIXTURE, [tarball], { stdio: 'ignore' });
    rootfs = path.join(work, 'rootfs');
    await fs.mkdir(rootfs, { mode: 0o755 });
    execFileSync('tar', ['-xf', tarball, '-C', rootfs]);
    bundleDir = path.join(work, 'bundles');
    runtime = runtimeWith('state');
  }, 60_000);

  afterEach(async () => {
    // no container, bundle (netns files), slirp4netns or namespace holder outlives a run
    expect(await runtime.list()).toEqual([]);
    expect(existsSync(bundleDir) ? readdirSync(bundleDir) : []).toEqual([]);
    expect(helperChildren()).toEqual([]);
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

  it('has lo and tap0 with a default route, its own resolv.conf and hosts, none of them in the rootfs', async () => {
    const r = await run([
      'sh',
      '-c',
      'ls /sys/class/net; ip -4 route; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hosts; hostname',
    ]);
    expect(r.exitCode).toBe(0);
    const [ifaces, resolv, hosts] = r.stdout.split('---\n');
    expect(ifaces).toMatch(/^lo\ntap0\n/);
    expect(ifaces).toMatch(/default via 10\.0\.2\.2 dev tap0/);
    expect(resolv).toMatch(/^nameserver \d+\.\d+\.\d+\.\d+$/m);
    expect(resolv).not.toMatch(/nameserver 127\./);
    expect(hosts).toMatch(/^127\.0\.0\.1\tlocalhost$/m);
    expect(hosts).toMatch(/^10\.0\.2\.100\tstratum$/m);
    // bound in for the run only: the busybox root has neither file, and runc's stubs are gone
    expect(existsSync(path.join(rootfs, 'etc/resolv.conf'))).toBe(false);
    expect(existsSync(path.join(rootfs, 'etc/hosts'))).toBe(false);
  });

  it('the files are read-only and the step cannot change its network (no CAP_NET_ADMIN, no CAP_NET_RAW)', async () => {
    const r = await run([
      'sh',
      '-c',
      'echo x >> /etc/hosts || echo HOSTS-RO; ip route del default || echo ROUTE-KEPT; ip link set tap0 down || echo LINK-KEPT; grep CapEff /proc/self/status',
    ]);
    expect(r.stdout).toMatch(/HOSTS-RO/);
    expect(r.stdout).toMatch(/ROUTE-KEPT/);
    expect(r.stdout).toMatch(/LINK-KEPT/);
    // Docker's default set (a80425fb) without CAP_NET_RAW (bit 13)
    expect(r.stdout).toMatch(/^CapEff:\s+00000000a80405fb$/m);
  });

  it("cannot reach a server on the host's loopback, its own addresses or the slirp host alias", async () => {
    const loopback = await listen('127.0.0.1');
    const hostAddress = hostIpv4Addresses()[0];
    if (hostAddress === undefined) {
      throw new Error('this host has no non-loopback IPv4 address to test with');
    }
    const onHost = await listen(hostAddress);
    try {
      // sanity: both servers answer from the host itself
      for (const [host, port] of [
        ['127.0.0.1', loopback.port],
        [hostAddress, onHost.port],
      ] as const) {
        // (async: the servers live on this process's event loop)
        const reply = await promisify(execFile)('busybox', ['nc', '-w', '3', host, String(port)], {
          timeout: 10_000,
        });
        expect(reply.stdout).toBe('reached\n');
      }
      const targets = [
        `127.0.0.1 ${loopback.port}`,
        `10.0.2.2 ${loopback.port}`,
        `${hostAddress} ${onHost.port}`,
        `169.254.169.254 80`,
      ];
      const script = targets
        .map((t) => `echo "== ${t}"; nc -w 3 ${t} </dev/null 2>&1; echo "rc=$?"`)
        .join('; ');
      const r = await run(['sh', '-c', script]);
      expect(r.stdout).not.toMatch(/reached/);
      for (const t of targets) {
        expect(r.stdout).toContain(`== ${t}\n`);
      }
      expect(r.stdout.match(/rc=1/g)).toHaveLength(targets.length);
      // refused inside the step's namespace at once, not after a connect timeout
      expect(r.stdout.match(/Connection refused/g)?.length).toBe(targets.length);
      expect(r.ms).toBeLessThan(10_000);
      expect(loopback.connections()).toBe(1); // only the sanity check
      expect(onHost.connections()).toBe(1);
    } finally {
      await loopback.close();
      await onHost.close();
    }
  });

  it("the step's own loopback works", async () => {
    const r = await run([
      'sh',
      '-c',
      // The client sends, the listener writes what it got: bytes sent before a close always
      // arrive (the other way, a client whose stdin ended could close before reading them).
      'nc -l -p 7777 >/tmp/got & l=$!; i=0; until echo pong | nc -w 2 127.0.0.1 7777; do i=$((i+1)); [ $i -gt 20 ] && exit 9; sleep 0.1; done; wait $l; cat /tmp/got',
    ]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('pong\n');
  });

  it("network 'none' has only lo, a hosts file and no resolver", async () => {
    const r = await run(
      [
        'sh',
        '-c',
        'cat /proc/net/dev | tail -n +3 | cut -d: -f1; cat /etc/hosts; test -e /etc/resolv.conf || echo NO-RESOLV',
      ],
      { network: 'none' },
    );
    const lines = r.stdout.split('\n').map((l) => l.trim());
    expect(lines[0]).toBe('lo');
    expect(r.stdout).toMatch(/^127\.0\.1\.1\tstratum$/m);
    expect(r.stdout).not.toMatch(/tap0/);
    expect(r.stdout).toMatch(/NO-RESOLV/);
    expect(existsSync(path.join(rootfs, 'etc/hosts'))).toBe(false);
  });

  it('a cancelled or timed-out step leaves no slirp4netns or namespace behind', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 500);
    const cancelled = await run(['sleep', '60'], {}, { signal: controller.signal });
    expect(cancelled.cancelled).toBe(true);
    expect(helperChildren()).toEqual([]);
    const timedOut = await run(['sleep', '60'], {}, { timeoutMs: 500 });
    expect(timedOut.timedOut).toBe(true);
  });

  it('sweep kills the helpers a crashed worker left and removes their bundle', async () => {
    const bundle = path.join(bundleDir, 'crashed');
    await fs.mkdir(bundle, { recursive: true });
    // what a worker killed mid-step leaves: a live network and its pid file, never closed
    const left = await SandboxNetwork.open(bundle, { hostAddresses: [], nameservers: ['10.0.2.3'] });
    expect(left.netnsPath).toMatch(/^\/proc\/\d+\/ns\/net$/);
    expect(helperChildren()).toHaveLength(2);
    const swept = await runtime.sweep();
    expect(swept.networkProcesses).toBe(2);
    expect(swept.bundles).toEqual(['crashed']);
    for (let i = 0; i < 50 && helperChildren().length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(helperChildren()).toEqual([]);
    await left.close();
  });

  it('deferTeardown: the run resolves with the rootfs clean while runc state, network and bundle go in the background; settled() waits for them', async () => {
    const id = `n${process.pid}-${++seq}`;
    const out: Buffer[] = [];
    const r = await runtime.run(
      id,
      {
        rootfs,
        args: ['sh', '-c', 'ip -4 route | grep -c "^default via 10.0.2.2"'],
        network: 'sandbox',
        deferTeardown: true,
      },
      { onStdout: (c) => out.push(c), onStderr: () => undefined, timeoutMs: 30_000 },
    );
    expect(r.exitCode).toBe(0);
    expect(Buffer.concat(out).toString().trim()).toBe('1');
    // what the step's layer would hold is final now: no mount-point stub is left in the rootfs
    for (const stub of ['etc/resolv.conf', 'etc/hosts', 'proc', 'sys', 'dev']) {
      const existed = ['proc', 'sys', 'dev'].includes(stub); // the fixture has these dirs
      expect([stub, existsSync(path.join(rootfs, stub))]).toEqual([stub, existed]);
    }
    // the id stays taken until the teardown ends
    const again = runtime
      .run(id, { rootfs, args: ['true'] }, { onStdout: () => undefined, onStderr: () => undefined })
      .then(
        () => 'ran',
        (err: unknown) => err,
      );
    await runtime.settled();
    expect(await runtime.list()).toEqual([]);
    expect(existsSync(bundleDir) ? readdirSync(bundleDir) : []).toEqual([]);
    expect(helperChildren()).toEqual([]);
    // a second run of the id started during the teardown was refused, not mixed with it
    expect(await again).toMatchObject({ reason: 'CONTAINER_EXISTS' });
  });

  it('costs little per step (ms with and without the sandbox)', async () => {
    const times: Record<string, number[]> = { none: [], sandbox: [] };
    for (let i = 0; i < 5; i++) {
      for (const network of ['none', 'sandbox'] as const) {
        const r = await run(['true'], { network });
        expect(r.exitCode).toBe(0);
        times[network]?.push(r.ms);
      }
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    console.log(
      `per-step time, median of 5: none ${median(times.none ?? [])} ms, sandbox ${median(times.sandbox ?? [])} ms`,
    );
    expect(median(times.sandbox ?? [])).toBeLessThan(median(times.none ?? []) + 1000);
  }, 60_000);
  it('with sandboxSpare, the next step gets a namespace made while this one ran, fresh each time', async () => {
    const spared = runtimeWith('state-spare', { sandboxSpare: true });
    const netns = (): Promise<string> => netnsOf(spared, `n${process.pid}-${++seq}`);
    // The spare of a run is made while that run's namespace lives (so their inode numbers
    // differ; a destroyed namespace's number may be reused later, so only live ones compare).
    const spareInode = async (): Promise<string> => {
      let spare: string | null = null;
      for (let i = 0; i < 100 && spare === null; i++) {
        spare = await spared.spareNetns();
        if (spare === null) {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      expect(spare).not.toBeNull();
      return fs.readlink(spare as string);
    };
    try {
      const first = await netns();
      const spare1 = await spareInode();
      expect(spare1).not.toBe(first);
      const second = await netns();
      expect(second).toBe(spare1);
      // and the run after that gets the next spare, made while the second ran: never a used one
      const spare2 = await spareInode();
      expect(spare2).not.toBe(second);
      expect(await netns()).toBe(spare2);
    } finally {
      await spared.closeSpare();
    }
    // afterEach: no helper process, bundle dir or container is left once the spare is closed
  }, 60_000);

  it('makeSpares: a fresh runtime has its two spares before its first run, which takes one', async () => {
    const spared = runtimeWith('state-warm', { sandboxSpare: true });
    const slirps = (): number => helperChildren().filter((p) => p.endsWith(':slirp4netns')).length;
    try {
      await spared.makeSpares();
      expect(slirps()).toBe(2);
      const spare = await spared.spareNetns();
      expect(spare).not.toBeNull();
      const made = await fs.readlink(spare as string);
      expect(await netnsOf(spared, `n${process.pid}-${++seq}`)).toBe(made);
    } finally {
      await spared.closeSpare();
    }
    expect(slirps()).toBe(0);
  }, 60_000);

  it('runs of one sandboxShare take turns on one live namespace, another share has its own, and a release closes them', async () => {
    const sharing = runtimeWith('state-share');
    const sharingSlots = cgroupSlotPrefix(path.join(work, 'state-share'));
    const ids: string[] = [];
    const netns = (share: string): Promise<string> => {
      const id = `n${process.pid}-${++seq}`;
      ids.push(id);
      return netnsOf(sharing, id, { sandboxShare: share });
    };
    const slirps = (): number => helperChildren().filter((p) => p.endsWith(':slirp4netns')).length;
    try {
      const a0 = await netns('build-a');
      expect(await netns('build-a')).toBe(a0);
      // a waiting network whose slirp4netns died (killed from outside) serves no run: a new one does
      const dead = helperChildren().filter((p) => p.endsWith(':slirp4netns'));
      expect(dead).toHaveLength(1);
      process.kill(Number(dead[0].split(':')[0]), 'SIGKILL');
      const a1 = await netns('build-a');
      expect(slirps()).toBe(1);
      expect(await netns('build-a')).toBe(a1);
      // build-a's namespace lives (it waits for build-a's next run), so the numbers compare
      const b1 = await netns('build-b');
      expect(b1).not.toBe(a1);
      // two runs of one share at once: one gets the waiting namespace, the other a new one
      const both = await Promise.all([netns('build-a'), netns('build-a')]);
      expect(new Set(both).size).toBe(2);
      expect(both).toContain(a1);
      expect(slirps()).toBe(3);
      sharing.releaseSandboxes('build-a');
      await sharing.settled();
      expect(slirps()).toBe(1);
      // every run's runtime state is gone, though no `runc delete` ran for them; their cgroups
      // are slots, kept empty for the next runs
      expect(await sharing.list()).toEqual([]);
      for (const id of ids) {
        expect(existsSync(path.join(work, 'state-share', id))).toBe(false);
      }
      const slots = (hierarchy: string): string[] =>
        readdirSync(path.join('/sys/fs/cgroup', hierarchy, CGROUP_PARENT), { withFileTypes: true })
          .filter((d) => d.isDirectory() && d.name.startsWith(sharingSlots))
          .map((d) => path.join('/sys/fs/cgroup', hierarchy, CGROUP_PARENT, d.name));
      expect(slots('memory').length).toBeGreaterThan(0);
      for (const slot of [...slots('memory'), ...slots('pids')]) {
        expect(readFileSync(path.join(slot, 'cgroup.procs'), 'utf8')).toBe('');
      }
    } finally {
      await sharing.closeSpare();
    }
    // closeSpare removed the slots
    expect(
      readdirSync(path.join('/sys/fs/cgroup/memory', CGROUP_PARENT)).filter((n) =>
        n.startsWith(sharingSlots),
      ),
    ).toEqual([]);
    expect(slirps()).toBe(0);
    // afterEach: no helper process, bundle dir or container is left
  }, 60_000);
});
