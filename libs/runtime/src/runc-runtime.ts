import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  promises as fs,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { ConfineError, resolveBeneath } from '@stratum/confine';
import { settledAll } from '@stratum/contracts';
import { execHelper, mountSysfsOf, unmount } from '@stratum/layers';
import {
  detectMemoryCgroup,
  hybridCgroup2Mounts,
  readOomKillCount,
  type MemoryCgroupLayout,
} from './cgroups';
import { RuntimeError } from './runtime-error';
import {
  hostIpv4Addresses,
  SandboxNetwork,
  SLIRP_GUEST_ADDRESS,
  stepHosts,
  stepNameservers,
  stepResolvConf,
  sweepSandboxProcesses,
  type SandboxAddresses,
  type SandboxTools,
} from './sandbox-network';
import {
  DEFAULT_NOFILE,
  generateRuntimeSpec,
  type ProcessUser,
  type RuntimeSpecOptions,
  type UsernsMapping,
} from './runtime-spec';
import { resolveUser } from './user';
import { DEFAULT_SECCOMP_PROFILE, loadSeccompProfile, SeccompProfile } from './seccomp';

/** Where runc and our per-container files live. */
export interface RuncRuntimeOptions {
  /**
   * Absolute path of the OCI runtime: runc (/usr/sbin/runc) or crun (/usr/bin/crun), told
   * apart by its `--version`. crun starts a container in ~30 ms where runc takes ~70 ms.
   */
  runcPath: string;
  /** Passed as `runc --root`: our containers' state, apart from anyone else's. Ideally on tmpfs. */
  stateRoot: string;
  /** Parent of the per-container bundle dirs (`<bundleDir>/<id>/config.json`). */
  bundleDir: string;
  /** Absolute cgroup parent; each container gets `<cgroupParent>/<id>`. Default `/stratum`. */
  cgroupParent?: string;
  /** After `runc kill` how long to wait before SIGKILLing runc itself. Default 10 s. */
  killGraceMs?: number;
  /** Problems that do not change a run's outcome (a failed clean-up). Default: process.emitWarning. */
  onWarning?: (message: string) => void;
  /** Programs of `network: 'sandbox'` (slirp4netns, unshare, iptables-restore); Debian paths by default. */
  sandboxTools?: SandboxTools;
  /** The host's resolver config, read for a sandboxed step's nameservers. Default /etc/resolv.conf. */
  hostResolvConf?: string;
  /**
   * Docker-format seccomp profile every container gets ({@link seccompFor} makes it Docker's
   * default or stricter). Default {@link DEFAULT_SECCOMP_PROFILE}; null: no filter (unconfined).
   */
  seccompProfile?: string | null;
  /**
   * Make the next sandboxed runs' networks ahead (two spares): while a sandboxed step runs, the
   * namespace, its rules and slirp4netns for a later one start, as BuildKit's CNI provider
   * keeps a pool of namespaces. A spare serves one run, or the runs of one `sandboxShare`
   * (see {@link RunOptions.sandboxShare}). Default false; {@link closeSpare} ends the spares
   * and the shared networks (worker shutdown).
   */
  sandboxSpare?: boolean;
}

/** What to run: {@link RuntimeSpecOptions} with `user` also accepted as a Dockerfile `USER` string. */
export interface RunOptions extends Omit<RuntimeSpecOptions, 'user' | 'cgroupsPath'> {
  /** `name`, `uid`, `name:group`, `uid:gid` (resolved in the rootfs), or numeric ids. Default root. */
  user?: string | ProcessUser;
  /**
   * When the process ended by itself (or was stopped) normally, resolve as soon as the rootfs
   * is as the process left it (mount-point stubs removed), and delete the runc state, close
   * the sandbox network and remove the bundle in the background: a build step's next step
   * need not wait for them. {@link RuncRuntime.settled} waits for that teardown; until it
   * ends the id stays in use. Default false: everything is gone when `run` resolves.
   */
  deferTeardown?: boolean;
  /**
   * Runs given the same value share a sandbox network, one run at a time: when this run's
   * container has stopped, its network (namespace, rules, slirp4netns) serves the next run with
   * this value instead of being closed, as BuildKit's CNI provider hands a released namespace
   * to the next run, until {@link RuncRuntime.releaseSandboxes}. A build passes its id: its
   * steps skip making a network each (a step has no CAP_NET_ADMIN, so it cannot change the
   * namespace's rules or addresses for the next). Each run still gets its own hosts,
   * resolv.conf and sysfs.
   */
  sandboxShare?: string;
}

/** Output sinks and the ways a run may be stopped early. */
export interface RunIo {
  onStdout(chunk: Buffer): void;
  onStderr(chunk: Buffer): void;
  /** Aborting kills the container (SIGKILL) and resolves with `cancelled: true`. */
  signal?: AbortSignal;
  /** Kills the container after this long and resolves with `timedOut: true`. */
  timeoutMs?: number;
  /** Piped to the process's stdin; without it stdin is /dev/null. */
  stdin?: Readable;
  /** Called once `runc run` has been started (the container is being made and run). */
  onStarted?: () => void;
}

/** How a run ended. Expected outcomes (non-zero exit, timeout, abort, OOM) are values, not errors. */
export interface RunResult {
  /** runc's exit status: the process's code, or 128+n when signal n killed it (Docker's convention). */
  exitCode: number | null;
  /**
   * The signal name when exitCode > 128 maps to one (a process that itself exits 137 looks
   * the same), or when runc itself was killed (then exitCode is null).
   */
  signal: string | null;
  timedOut: boolean;
  cancelled: boolean;
  /** With a memory limit: whether the kernel OOM-killed a process in the container; else undefined. */
  oomKilled?: boolean;
}

/** What {@link RuncRuntime.sweep} removed. */
export interface SweepResult {
  containers: string[];
  bundles: string[];
  /** Sandbox network helpers (slirp4netns, namespace holders) still running, killed. */
  networkProcesses: number;
}

interface RuncOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

const CGROUP_ROOT = '/sys/fs/cgroup';

/** The part of runc's `<root>/<id>/state.json` we read. */
interface RuncState {
  init_process_pid?: unknown;
  init_process_start?: unknown;
  cgroup_paths?: Record<string, unknown>;
}

/**
 * The name prefix of the cgroup slots of the runtime with state root `stateRoot` (slot n is
 * `<cgroupParent>/<prefix><n>`): one worker's slots apart from another's on the same host, as
 * each has its own state root.
 */
export function cgroupSlotPrefix(stateRoot: string): string {
  return `slot-${createHash('sha256').update(stateRoot).digest('hex').slice(0, 8)}-`;
}

/** A runc container's cgroup dirs from its state, each checked to be under cgroupfs and `ours`. */
function runcCgroupDirs(state: RuncState, ours: (dir: string) => boolean): string[] {
  return Object.values(state.cgroup_paths ?? {}).map((p) => {
    if (
      typeof p !== 'string' ||
      !p.startsWith('/sys/fs/cgroup/') ||
      path.posix.normalize(p) !== p ||
      !ours(p)
    ) {
      throw new Error(`not this container's cgroup: ${String(p)}`);
    }
    return p;
  });
}

async function removeCgroups(dirs: string[]): Promise<void> {
  await Promise.all(
    dirs.map((p) =>
      fs.rmdir(p).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') {
          throw err;
        }
      }),
    ),
  );
}

/**
 * Field 22 of /proc/<pid>/stat (start time in clock ticks, as runc records it), or null when
 * there is no such process or it has ended (a zombie not yet reaped).
 */
async function processStartTime(pid: number): Promise<string | null> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: fields 3.. follow its last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' || fields[0] === 'X' ? null : (fields[19] ?? null);
  } catch {
    return null;
  }
}

/** Lazily unmounts the sysfs a run mounted in its bundle dir (`<bundle>/sys`), if any. */
async function unmountIn(bundle: string): Promise<void> {
  const target = path.join(bundle, 'sys');
  const mounted = (await fs.readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .some((l) => l.split(' ')[4] === target);
  if (mounted) {
    // umount(2) in the exec helper: no fork of this process (see @stratum/layers' exec-helper.ts)
    const res = await unmount(target, { lazy: true });
    if (!res.ok) {
      throw new Error(`unmounting ${target}: ${res.message}`);
    }
  }
}

/** A mount of /proc/self/mountinfo: its target and its per-mount flags. */
interface MountTableEntry {
  target: string;
  flags: string[];
}

/** This process's mounts (/proc/self/mountinfo), in order. */
async function readMountTable(): Promise<MountTableEntry[]> {
  return (await fs.readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const f = l.split(' ');
      return {
        target: f[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))),
        flags: f[5].split(','),
      };
    });
}

/**
 * Adds to each bind mount the nosuid/nodev/noexec flags of the mount its source is on (in
 * `table`, {@link readMountTable}): in a user namespace those flags are locked, and runc 1.1's
 * read-only remount of a bind, which leaves them out, fails (EPERM) for a source on, say, a
 * secrets tmpfs mounted noexec.
 */
function keepLockedFlags(
  mounts: { type?: string; source?: string; options?: string[] }[],
  table: readonly MountTableEntry[],
): void {
  for (const m of mounts) {
    if (m.type !== 'bind' || m.source === undefined) {
      continue;
    }
    const source = m.source;
    let best: MountTableEntry | undefined;
    for (const e of table) {
      const under = e.target === '/' || source === e.target || source.startsWith(`${e.target}/`);
      // the last mount at the deepest target is the one on top
      if (under && (best === undefined || e.target.length >= best.target.length)) {
        best = e;
      }
    }
    const locked = (best?.flags ?? []).filter((f) => f === 'nosuid' || f === 'nodev' || f === 'noexec');
    m.options = [...(m.options ?? []), ...locked.filter((f) => !(m.options ?? []).includes(f))];
  }
}

/** runc's own rule for container ids, made a little stricter (no leading dot). */
const ID_PATTERN = /^[A-Za-z0-9_+-][A-Za-z0-9_+.-]{0,127}$/;
const KILL_RETRY_MS = 200;
const STDIO_DRAIN_MS = 5000;

/** How `runc run` ended: its exit code, or the signal that ended it. */
interface RuncExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Hands a chunk of the run's output to a sink (a throwing sink stops the run). */
type Deliver = (sink: (chunk: Buffer) => void, chunk: Buffer) => void;

/** A started `runc run`. */
interface RuncProcess {
  /** runc's pid, once known. */
  pid: () => number | undefined;
  ended: Promise<RuncExit>;
  /** Lets go of what the run was given (its stdin). */
  release: () => void;
}

/** The name of signal `n` (9: SIGKILL), or null. */
function signalName(n: number): NodeJS.Signals | null {
  return (SIGNAL_NAMES.get(n) as NodeJS.Signals | undefined) ?? null;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name] as [number, string]),
);

/** runc: "container x does not exist"; crun: "cannot open directory '<root>/x': No such file or directory". */
function isMissingContainer(stderr: string): boolean {
  return /does not exist|not exist|not found|No such file or directory/i.test(stderr);
}

/** Sandbox networks waiting for their share's next run: per share, and in all. */
const MAX_SHARED_PER_KEY = 4;
const MAX_SHARED = 16;
/** Spare sandbox networks kept made ahead (see RuncRuntimeOptions.sandboxSpare). */
const SANDBOX_SPARES = 2;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs processes in containers with runc or crun, one `runc run --keep` (or `crun run
 * --detach`, its init reaped by the exec helper) per process, its stdout and stderr as separate
 * pipes (no terminal). Every run removes its runtime state and bundle dir when it ends; the
 * rootfs is never deleted.
 * https://github.com/opencontainers/runc/blob/v1.1.5/docs/terminals.md (pass-through stdio)
 */
export class RuncRuntime {
  private readonly cgroupParent: string;
  private readonly killGraceMs: number;
  private readonly active = new Set<string>();
  /** Teardowns of runs that resolved before their runc state and network were gone. */
  private readonly teardowns = new Map<string, Promise<void>>();
  /** The next sandboxed runs' networks, made or being made (see `sandboxSpare`), oldest first. */
  private spares: { readonly id: string; readonly key: string; readonly net: Promise<SandboxNetwork> }[] = [];
  /** Spare networks in use, by the bundle-dir name they were made in (removed after the run). */
  private readonly spareDirs = new Map<SandboxNetwork, string>();
  /** Networks of stopped runs waiting for the next run of their `sandboxShare`, by share. */
  private readonly shared = new Map<string, { readonly key: string; readonly net: SandboxNetwork }[]>();
  private closing = false;
  private memoryCgroup: Promise<MemoryCgroupLayout> | undefined;
  private seccomp: Promise<SeccompProfile | null> | undefined;
  private flavour: Promise<RuntimeFlavour> | undefined;
  /** {@link defaultNofile}, read once (this process's limit does not change). */
  private nofile: Promise<{ soft: number; hard: number }> | undefined;
  /**
   * crun: the seccomp filter it compiled for a profile (its state dir's seccomp.bpf, base64),
   * by the sha256 of the spec's seccomp section; see {@link SECCOMP_BPF_ANNOTATION}.
   */
  private readonly seccompBpf = new Map<string, string>();
  /**
   * Cgroups are reused: a run takes the lowest free slot (`<cgroupParent>/<slotPrefix><n>`)
   * and gives it back once its container is gone. A removed memory cgroup lingers, dying, as
   * long as page cache it charged (the step's files) stays cached, and file creation on the
   * host slows with their number (a 20 000-file RUN loop: 0.4 s of system CPU beside 20 memory
   * cgroups, 5 s beside 389). With slots a worker keeps as many as it runs steps at once.
   */
  private readonly slotsInUse = new Set<number>();
  private readonly slotPrefix: string;

  constructor(private readonly options: RuncRuntimeOptions) {
    for (const [key, value] of [
      ['runcPath', options.runcPath],
      ['stateRoot', options.stateRoot],
      ['bundleDir', options.bundleDir],
    ] as const) {
      if (!path.isAbsolute(value)) {
        throw new RuntimeError(
          'OPTIONS_INVALID',
          `${key} must be an absolute path, got ${JSON.stringify(value)}`,
        );
      }
    }
    this.cgroupParent = options.cgroupParent ?? '/stratum';
    if (!path.isAbsolute(this.cgroupParent)) {
      throw new RuntimeError('OPTIONS_INVALID', 'cgroupParent must be absolute');
    }
    this.killGraceMs = options.killGraceMs ?? 10_000;
    this.slotPrefix = cgroupSlotPrefix(options.stateRoot);
  }

  /** The cgroup slot a run takes (the lowest free one); its teardown gives it back once the container is gone. */
  private takeSlot(): { slot: number; cgroupsPath: string } {
    let slot = 0;
    while (this.slotsInUse.has(slot)) {
      slot++;
    }
    this.slotsInUse.add(slot);
    return { slot, cgroupsPath: path.posix.join(this.cgroupParent, `${this.slotPrefix}${slot}`) };
  }

  /**
   * Runs `options.args` in a new container named `id` and resolves when it has ended and
   * been cleaned up. Stdout and stderr chunks reach `io` as they are written.
   * @throws RuntimeError OPTIONS_INVALID / USER_UNKNOWN before anything starts,
   *   CONTAINER_EXISTS for an id in use, START_FAILED when runc could not start the process
   *   (e.g. executable not found), RUNC_FAILED when runc itself could not be run.
   */
  async run(id: string, options: RunOptions, io: RunIo): Promise<RunResult> {
    this.checkId(id);
    if (this.active.has(id)) {
      throw new RuntimeError('CONTAINER_EXISTS', `container ${id} is already running`, { id });
    }
    if (io.signal?.aborted) {
      return { exitCode: null, signal: null, timedOut: false, cancelled: true };
    }
    if (io.timeoutMs !== undefined && !(Number.isFinite(io.timeoutMs) && io.timeoutMs > 0)) {
      throw new RuntimeError(
        'OPTIONS_INVALID',
        `timeoutMs must be a positive number, got ${String(io.timeoutMs)}`,
      );
    }
    this.active.add(id);
    try {
      return await this.runActive(id, options, io);
    } finally {
      // a deferred teardown lets the id go when it ends
      if (!this.teardowns.has(id)) {
        this.active.delete(id);
      }
    }
  }

  /** Resolves when every teardown deferred so far (see `deferTeardown`) has ended. */
  async settled(): Promise<void> {
    await Promise.all([...this.teardowns.values()]);
  }

  private async runActive(id: string, options: RunOptions, io: RunIo): Promise<RunResult> {
    // The user (also for the default, root: HOME and supplementary groups come from the image)
    // and the open-files limit are asked side by side; both fail before anything is made.
    const [{ user, home }, nofile] = await settledAll([
      typeof options.user === 'object'
        ? { user: options.user, home: '/' }
        : resolveUser(options.rootfs, options.user).then((u) => ({ user: u, home: u.home })),
      options.nofile ?? (this.nofile ??= defaultNofile()),
    ] as const);
    // The bundle's small files and dirs are made synchronously: each takes microseconds on the
    // runtime's tmpfs, where a thread-pool round trip took ~0.3-0.6 ms, ~10 of them per step.
    const bundle = path.join(this.options.bundleDir, id);
    try {
      mkdirSync(this.options.bundleDir, { recursive: true, mode: 0o700 });
      mkdirSync(bundle, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new RuntimeError('CONTAINER_EXISTS', `bundle for container ${id} already exists`, { id });
      }
      throw err;
    }

    // given back at the end of teardown: a forced delete empties and removes the cgroup it names
    const { slot, cgroupsPath } = this.takeSlot();
    // runc creates missing mount points in the rootfs; remember them to remove afterwards,
    // so /proc, /etc/resolv.conf or a cache mount's stub don't end up in the layer
    let stubs: string[] = [];
    let sandbox: SandboxNetwork | null = null;
    let sandboxKey = '';
    let defer = false;
    // runc run returned the container's status: it is stopped (see removeStopped)
    let stopped = false;
    let sysfs: string | null = null;
    try {
      const network = options.network ?? 'none';
      const hostname = options.hostname ?? 'stratum';
      let netnsPath: string | undefined;
      let networkFiles: RuntimeSpecOptions['networkFiles'];
      let sysfsSource: string | undefined;
      // The bundle's network side (its files, the sandbox and a sysfs of it) is made beside
      // what the spec needs besides: a step's start waited ~12 ms for these one after another.
      const networkSide = async (): Promise<void> => {
        if (options.userns !== undefined) {
          // runc mounts the network files from inside the user namespace: its root must pass
          // (search only: config.json stays 0600, and nothing here can be listed)
          makeTraversable(bundle);
        }
        if (network !== 'host') {
          const hosts = path.join(bundle, 'hosts');
          writeFileSync(
            hosts,
            stepHosts(hostname, network === 'sandbox' ? SLIRP_GUEST_ADDRESS : '127.0.1.1'),
            {
              mode: 0o644,
            },
          );
          networkFiles = { hosts };
        }
        if (network === 'sandbox') {
          const { addresses, hostResolv } = await this.sandboxAddresses();
          const resolvConf = path.join(bundle, 'resolv.conf');
          writeFileSync(resolvConf, stepResolvConf(hostResolv, addresses.nameservers), { mode: 0o644 });
          networkFiles = { ...networkFiles, resolvConf };
          sandboxKey = JSON.stringify(addresses);
          sandbox = await this.sandboxNetwork(bundle, addresses, options.sandboxShare);
          netnsPath = sandbox.netnsPath;
        }
        if (options.userns !== undefined) {
          // root's in the step, as Docker's userns-remap makes them (else they show as nobody's)
          const { uid, gid } = options.userns;
          for (const file of [networkFiles?.hosts, networkFiles?.resolvConf]) {
            if (file !== undefined) {
              chownSync(file, uid, gid);
            }
          }
        }
        if (options.userns !== undefined && network === 'host') {
          sysfsSource = '/sys';
        } else if (options.userns !== undefined && netnsPath !== undefined) {
          // a sysfs made in the sandbox's namespace (it lists tap0 and lo, nothing of the host's)
          sysfs = path.join(bundle, 'sys');
          mkdirSync(sysfs);
          await mountSysfsOf(netnsPath, sysfs);
          sysfsSource = sysfs;
        }
      };
      const [, seccompProfile, flavour] = await settledAll([
        networkSide(),
        this.seccompProfile(),
        this.runtimeFlavour(),
      ] as const);
      const spec = generateRuntimeSpec({
        ...options,
        ...(seccompProfile !== null ? { seccompProfile } : {}),
        user,
        cgroupsPath,
        nofile,
        ...(netnsPath !== undefined ? { netnsPath } : {}),
        ...(networkFiles !== undefined ? { networkFiles } : {}),
        ...(sysfsSource !== undefined ? { sysfsSource } : {}),
      });
      const seccompKey =
        flavour.kind === 'crun' && spec.linux.seccomp !== undefined
          ? createHash('sha256').update(JSON.stringify(spec.linux.seccomp)).digest('hex')
          : null;
      const bpf = seccompKey !== null ? this.seccompBpf.get(seccompKey) : undefined;
      if (bpf !== undefined) {
        spec.annotations = { ...spec.annotations, [SECCOMP_BPF_ANNOTATION]: bpf };
      }
      // Docker sets HOME from the passwd entry when the image does not
      if (!spec.process.env?.some((e) => e.startsWith('HOME='))) {
        spec.process.env?.push(`HOME=${home}`);
      }
      // (the mount table is read after the sysfs mount above: a bind of it must keep its flags)
      const [missing, mountTable] = await settledAll([
        missingMountPoints(
          options.rootfs,
          spec.mounts.map((m) => m.destination),
        ),
        options.userns !== undefined ? readMountTable() : null,
      ] as const);
      stubs = missing;
      if (mountTable !== null) {
        keepLockedFlags(spec.mounts, mountTable);
      }
      writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
      // the network took a moment: a cancel in it must not be missed by execute's listener
      if (io.signal?.aborted) {
        return { exitCode: null, signal: null, timedOut: false, cancelled: true };
      }
      const result = await this.execute(id, bundle, cgroupsPath, options.memoryBytes !== undefined, io);
      if (seccompKey !== null && bpf === undefined && result.exitCode !== null) {
        await this.keepSeccompBpf(id, seccompKey);
      }
      // runc run returned the container's status: the container is stopped, its processes
      // and mounts are gone (a runc killed after killGraceMs may leave it running: no defer)
      stopped = result.exitCode !== null;
      defer = options.deferTeardown === true && stopped;
      return result;
    } finally {
      if (stopped && sandbox !== null && options.sandboxShare !== undefined && !this.closing) {
        // nothing of the container is left in it: the next run of the share may start now
        this.share(options.sandboxShare, sandboxKey, sandbox);
        sandbox = null;
      }
      const teardown = async (): Promise<void> => {
        let gone = false;
        try {
          gone = await (stopped ? this.removeStopped(id) : this.forceDelete(id));
        } finally {
          // a container that could not be deleted may still have processes in its cgroup:
          // the slot stays taken (the next run takes another), the start-up sweep clears it
          if (gone) {
            this.slotsInUse.delete(slot);
          }
        }
        await sandbox?.close();
        if (sandbox !== null) {
          await this.releaseSpareDir(sandbox);
        }
        if (sysfs !== null) {
          // never delete through a mount
          await unmountIn(bundle);
        }
        await fs.rm(bundle, { recursive: true, force: true });
      };
      if (defer) {
        await removeStubs(stubs);
        this.teardowns.set(
          id,
          teardown()
            .catch((err: unknown) => this.warn(`teardown of container ${id}: ${String(err)}`))
            .finally(() => {
              this.teardowns.delete(id);
              this.active.delete(id);
            }),
        );
      } else {
        await teardown();
        await removeStubs(stubs);
      }
    }
  }

  /**
   * A sandbox network for a run: one its `share` left for the same addresses; else the spare
   * made ahead when it was made for the same addresses; else a new one (in `bundle`, or in a
   * dir of its own when it may outlive the run). When the spare is taken, the next one starts.
   */
  private async sandboxNetwork(
    bundle: string,
    addresses: SandboxAddresses,
    share: string | undefined,
  ): Promise<SandboxNetwork> {
    const key = JSON.stringify(addresses);
    for (;;) {
      const waiting = share !== undefined ? this.shared.get(share) : undefined;
      const at = waiting?.findIndex((e) => e.key === key) ?? -1;
      if (waiting === undefined || at === -1) {
        break;
      }
      const [{ net }] = waiting.splice(at, 1);
      if (waiting.length === 0) {
        this.shared.delete(share as string);
      }
      if (await net.alive()) {
        return net;
      }
      // its slirp4netns or holder died (killed from outside): a new one serves
      await this.closeNetwork(net);
    }
    const spare = this.spares.shift();
    let net: SandboxNetwork | null = null;
    if (spare !== undefined) {
      const made = await spare.net.catch(() => null);
      if (made !== null && spare.key === key) {
        net = made;
        this.spareDirs.set(net, spare.id);
      } else {
        await made?.close();
        await this.dropSpareDir(spare.id);
      }
    }
    if (net === null && share !== undefined) {
      const own = this.openInOwnDir(addresses);
      net = await own.net;
      this.spareDirs.set(net, own.id);
    }
    net ??= await SandboxNetwork.open(bundle, addresses, this.options.sandboxTools);
    this.topUpSpares(addresses, key);
    return net;
  }

  /** The host's addresses a sandboxed step may not reach, and its nameservers, as of now. */
  private async sandboxAddresses(): Promise<{ addresses: SandboxAddresses; hostResolv: string }> {
    const hostAddresses = hostIpv4Addresses();
    let hostResolv = '';
    try {
      hostResolv = readFileSync(this.options.hostResolvConf ?? '/etc/resolv.conf', 'utf8');
    } catch {
      // unreadable: as an empty one
    }
    return {
      addresses: { hostAddresses, nameservers: stepNameservers(hostResolv, hostAddresses) },
      hostResolv,
    };
  }

  /** With `sandboxSpare`: two spares, so the two first RUNs of parallel stages both find one. */
  private topUpSpares(addresses: SandboxAddresses, key: string): void {
    while (this.options.sandboxSpare === true && !this.closing && this.spares.length < SANDBOX_SPARES) {
      this.spares.push({ key, ...this.openInOwnDir(addresses) });
    }
  }

  /**
   * Runs one throwaway container at worker start-up, set up as a RUN step's is (`true` from a
   * static busybox, no network, `userns` as the steps get it), so that crun compiles the
   * seccomp filter the steps use now (see {@link SECCOMP_BPF_ANNOTATION}) and not in a fresh
   * worker's first step, which paid ~16 ms of CPU for it. With runc, without a seccomp
   * profile or without `busybox`, nothing is done. Failures are the caller's to log: the
   * first step compiles the filter then.
   */
  async warmUp(options: { userns?: UsernsMapping; busybox?: string } = {}): Promise<void> {
    const busybox = options.busybox ?? '/bin/busybox';
    if ((await this.runtimeFlavour()).kind !== 'crun' || (await this.seccompProfile()) === null) {
      return;
    }
    if (!existsSync(busybox)) {
      return;
    }
    const name = `warmup-${randomBytes(6).toString('hex')}`;
    const dir = path.join(this.options.bundleDir, name);
    const rootfs = path.join(dir, 'rootfs');
    try {
      mkdirSync(rootfs, { recursive: true, mode: 0o755 });
      copyFileSync(busybox, path.join(rootfs, 'true'));
      chmodSync(path.join(rootfs, 'true'), 0o755);
      if (options.userns !== undefined) {
        // the step's root creates the mount points (/proc, /etc/hosts, ...) from inside its namespace
        chownSync(rootfs, options.userns.uid, options.userns.gid);
      }
      const result = await this.run(
        `stratum-${name}`,
        {
          rootfs,
          args: ['/true'],
          network: 'none',
          noNewPrivileges: true,
          ...(options.userns !== undefined ? { userns: options.userns } : {}),
        },
        // a runtime that hangs must not hold the worker's start-up
        { onStdout: () => undefined, onStderr: () => undefined, timeoutMs: WARM_UP_TIMEOUT_MS },
      );
      if (result.exitCode !== 0) {
        throw new RuntimeError('START_FAILED', `warm-up container exited ${String(result.exitCode)}`);
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * With `sandboxSpare`, makes the spares now (worker start-up), as BuildKit's CNI provider
   * fills its namespace pool when it starts: a fresh worker's first RUN steps need not make
   * their networks. Resolves when they are made; one that fails is made again by a run.
   */
  async makeSpares(): Promise<void> {
    const { addresses } = await this.sandboxAddresses();
    this.topUpSpares(addresses, JSON.stringify(addresses));
    await Promise.all(this.spares.map((spare) => spare.net.catch(() => null)));
  }

  /** A network made in a bundle-dir of its own (`spare-*`), which a sweep leaves alone while it is ours. */
  private openInOwnDir(addresses: SandboxAddresses): { id: string; net: Promise<SandboxNetwork> } {
    const id = `spare-${randomBytes(6).toString('hex')}`;
    const dir = path.join(this.options.bundleDir, id);
    this.active.add(id);
    const net = (async () => {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      return SandboxNetwork.open(dir, addresses, this.options.sandboxTools);
    })();
    net.catch(() => this.dropSpareDir(id).catch(() => undefined));
    return { id, net };
  }

  /** A stopped run's network waits for the next run of `share` (a few at most; beyond, it closes). */
  private share(share: string, key: string, net: SandboxNetwork): void {
    const waiting = this.shared.get(share) ?? [];
    const total = [...this.shared.values()].reduce((n, list) => n + list.length, 0);
    if (waiting.length >= MAX_SHARED_PER_KEY || total >= MAX_SHARED) {
      void this.closeNetwork(net).catch((err: unknown) =>
        this.warn(`closing a sandbox network: ${String(err)}`),
      );
      return;
    }
    waiting.push({ key, net });
    this.shared.set(share, waiting);
  }

  /**
   * Closes the networks runs of `share` left, in the background (a build calls it when it
   * ends: its result need not wait); {@link settled} waits for it. A run of the share still in
   * flight afterwards leaves its network for {@link closeSpare}.
   */
  releaseSandboxes(share: string): void {
    const waiting = this.shared.get(share) ?? [];
    this.shared.delete(share);
    if (waiting.length === 0) {
      return;
    }
    const key = `share-${randomBytes(6).toString('hex')}`;
    this.teardowns.set(
      key,
      Promise.all(waiting.map((e) => this.closeNetwork(e.net)))
        .then(() => undefined)
        .catch((err: unknown) => this.warn(`closing the sandbox networks of ${share}: ${String(err)}`))
        .finally(() => this.teardowns.delete(key)),
    );
  }

  private async closeNetwork(net: SandboxNetwork): Promise<void> {
    await net.close();
    await this.releaseSpareDir(net);
  }

  private async releaseSpareDir(net: SandboxNetwork): Promise<void> {
    const id = this.spareDirs.get(net);
    if (id !== undefined) {
      this.spareDirs.delete(net);
      await this.dropSpareDir(id);
    }
  }

  private async dropSpareDir(id: string): Promise<void> {
    await fs.rm(path.join(this.options.bundleDir, id), { recursive: true, force: true });
    this.active.delete(id);
  }

  /**
   * Ends the spare sandbox networks, made or being made, and the shared ones; no new one is
   * made after. Removes the free cgroup slots (a worker's shutdown).
   */
  async closeSpare(): Promise<void> {
    this.closing = true;
    await this.settled();
    const spares = this.spares;
    this.spares = [];
    for (const spare of spares) {
      await (await spare.net.catch(() => null))?.close();
      await this.dropSpareDir(spare.id);
    }
    for (const share of [...this.shared.keys()]) {
      this.releaseSandboxes(share);
    }
    await this.settled();
    await this.removeFreeSlots();
  }

  /** The network namespace of the next spare, once made (`/proc/<pid>/ns/net`), or null. */
  async spareNetns(): Promise<string | null> {
    const next = this.spares[0];
    return next === undefined ? null : ((await next.net.catch(() => null))?.netnsPath ?? null);
  }

  /** The profile, read once; a failed read is retried on the next run. */
  private seccompProfile(): Promise<SeccompProfile | null> {
    const file =
      this.options.seccompProfile === undefined ? DEFAULT_SECCOMP_PROFILE : this.options.seccompProfile;
    if (file === null) {
      return Promise.resolve(null);
    }
    this.seccomp ??= loadSeccompProfile(file).catch((err: unknown) => {
      this.seccomp = undefined;
      throw err;
    });
    return this.seccomp;
  }

  /**
   * Keeps the filter crun compiled for container `id` (still in its state dir: a detached
   * run's state stays until its delete) for the next runs with the same profile.
   */
  private async keepSeccompBpf(id: string, key: string): Promise<void> {
    const data = await fs.readFile(path.join(this.options.stateRoot, id, 'seccomp.bpf')).catch(() => null);
    // a BPF program is an array of 8-byte instructions
    if (data !== null && data.length > 0 && data.length % 8 === 0 && this.seccompBpf.size < 16) {
      this.seccompBpf.set(key, data.toString('base64'));
    }
  }

  /**
   * Which runtime `runcPath` is (its `--version`), and for crun the host's cgroup2 mounts it
   * must not see (see {@link hybridCgroup2Mounts}); asked once, again after a failure.
   */
  private runtimeFlavour(): Promise<RuntimeFlavour> {
    this.flavour ??= (async (): Promise<RuntimeFlavour> => {
      const out = await execHelper.exec([this.options.runcPath, '--version']);
      if (out.code !== 0) {
        throw new RuntimeError(
          'RUNC_FAILED',
          `${this.options.runcPath} --version failed: ${out.stderr.toString().trim()}`,
        );
      }
      return /^crun\b/.test(out.stdout.toString())
        ? { kind: 'crun', hide: await hybridCgroup2Mounts() }
        : { kind: 'runc', hide: [] };
    })().catch((err: unknown) => {
      this.flavour = undefined;
      throw err instanceof RuntimeError
        ? err
        : new RuntimeError('RUNC_FAILED', `cannot run ${this.options.runcPath}: ${String(err)}`);
    });
    return this.flavour;
  }

  /** The OOM kills counted in a cgroup (null: unknown). */
  private async oomKills(cgroupsPath: string): Promise<number | null> {
    this.memoryCgroup ??= detectMemoryCgroup().catch(() => null);
    return readOomKillCount(await this.memoryCgroup, cgroupsPath);
  }

  private async execute(
    id: string,
    bundle: string,
    cgroupsPath: string,
    hasMemoryLimit: boolean,
    io: RunIo,
  ): Promise<RunResult> {
    const flavour = await this.runtimeFlavour();
    // the slot's cgroup may have counted earlier runs' kills
    const oomBefore = hasMemoryLimit ? await this.oomKills(cgroupsPath) : null;
    const logFile = path.join(bundle, 'runc.log');
    const initPidFile = path.join(bundle, 'init.pid');
    // The stopped container (and its cgroup) must outlive the run so we can read its OOM
    // counter; we delete it. runc: `run --keep`. crun (1.8) has no --keep: `run --detach`
    // leaves the container for `crun delete`, and the exec helper reaps its init (a run
    // with piped stdin has crun delete it: its OOM counter is then unknown).
    const runArgs =
      flavour.kind === 'runc'
        ? ['run', '--keep']
        : io.stdin
          ? ['run']
          : ['run', '--detach', '--pid-file', initPidFile];
    const argv = [
      this.options.runcPath,
      '--root',
      this.options.stateRoot,
      '--log',
      logFile,
      '--log-format',
      'json',
      ...runArgs,
      '--bundle',
      bundle,
      id,
    ];
    // a throwing sink must not become an uncaught exception: stop the container, rethrow later
    let sinkError: unknown = null;
    const deliver = (sink: (chunk: Buffer) => void, chunk: Buffer): void => {
      if (sinkError !== null) {
        return;
      }
      try {
        sink(chunk);
      } catch (err) {
        sinkError = err;
        stop('abort');
      }
    };
    const hideFailed = path.join(bundle, 'hide.failed');
    const runc = io.stdin
      ? this.spawnRunc(withHiddenMounts(argv, flavour.hide, hideFailed), io.stdin, deliver, io)
      : this.streamRunc(argv, deliver, io, {
          hide: flavour.hide,
          ...(flavour.kind === 'crun' ? { initPidFile } : {}),
        });

    let exited = false;
    let stopReason: 'timeout' | 'abort' | null = null;
    const ended = runc.ended.finally(() => {
      exited = true;
    });

    function stop(reason: 'timeout' | 'abort'): void {
      if (stopReason !== null || exited) {
        return;
      }
      stopReason = reason;
      void killUntilExit(id, runc.pid, () => exited);
    }
    const killUntilExit = this.killUntilExit.bind(this);
    const onAbort = (): void => stop('abort');
    io.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = io.timeoutMs !== undefined ? setTimeout(() => stop('timeout'), io.timeoutMs) : undefined;

    let exit: { code: number | null; signal: NodeJS.Signals | null };
    try {
      exit = await ended;
    } finally {
      clearTimeout(timer);
      io.signal?.removeEventListener('abort', onAbort);
      runc.release();
    }

    let oomKilled: boolean | undefined;
    if (hasMemoryLimit) {
      const count = await this.oomKills(cgroupsPath);
      oomKilled = count === null ? undefined : count > (oomBefore ?? 0);
    }

    if (sinkError !== null) {
      throw sinkError instanceof Error ? sinkError : new Error('output sink failed', { cause: sinkError });
    }
    if (stopReason === null && exit.code !== 0) {
      const startError = hiddenMountFailure(exit.code, hideFailed) ?? (await readRuncError(logFile));
      if (startError !== null) {
        throw new RuntimeError('START_FAILED', startError, { id, exitCode: exit.code });
      }
    }

    const result: RunResult = {
      exitCode: exit.code,
      signal:
        exit.signal ??
        (exit.code !== null && exit.code > 128 ? (SIGNAL_NAMES.get(exit.code - 128) ?? null) : null),
      timedOut: stopReason === 'timeout',
      cancelled: stopReason === 'abort',
    };
    if (oomKilled !== undefined) {
      result.oomKilled = oomKilled;
    }
    return result;
  }

  /**
   * `runc run` started by the worker's exec helper, its output streamed back through it: no
   * fork of this (large) process per step (see @stratum/layers' exec-helper.ts).
   */
  private streamRunc(
    argv: string[],
    deliver: Deliver,
    io: RunIo,
    options: { hide: readonly string[]; initPidFile?: string },
  ): RuncProcess {
    let pid: number | undefined;
    const ended = execHelper
      .stream(
        argv,
        {
          onPid: (p) => {
            // a detached run's second pid is its container's init: the one to SIGKILL
            const first = pid === undefined;
            pid = p;
            if (first) {
              io.onStarted?.();
            }
          },
          onStdout: (c) => deliver((chunk) => io.onStdout(chunk), c),
          onStderr: (c) => deliver((chunk) => io.onStderr(chunk), c),
        },
        { drainMs: STDIO_DRAIN_MS, ...options },
      )
      .then(
        (r) =>
          r.code < 0
            ? { code: null, signal: signalName(-r.code) }
            : { code: r.code, signal: null as NodeJS.Signals | null },
        (err: unknown) => {
          throw new RuntimeError('RUNC_FAILED', `cannot run ${argv[0]}: ${(err as Error).message}`);
        },
      );
    return { pid: () => pid, ended, release: () => undefined };
  }

  /** `runc run` as a child of this process, for a run whose stdin is piped in. */
  private spawnRunc(argv: string[], stdin: Readable, deliver: Deliver, io: RunIo): RuncProcess {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => deliver((c) => io.onStdout(c), chunk));
    child.stderr.on('data', (chunk: Buffer) => deliver((c) => io.onStderr(c), chunk));
    // the process may exit without reading its stdin: EPIPE is not our failure
    child.stdin.on('error', () => undefined);
    stdin.pipe(child.stdin);
    io.onStarted?.();
    const ended = new Promise<RuncExit>((resolve, reject) => {
      let exit: RuncExit | null = null;
      let drainTimer: NodeJS.Timeout | undefined;
      child.once('error', (err) => {
        reject(new RuntimeError('RUNC_FAILED', `cannot run ${argv[0]}: ${err.message}`));
      });
      child.once('exit', (code, signal) => {
        exit = { code, signal };
        // a stray holder of our pipes must not hang the run forever
        drainTimer = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, STDIO_DRAIN_MS);
      });
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(drainTimer);
        resolve(exit ?? { code, signal });
      });
    });
    return { pid: () => child.pid, ended, release: () => stdin.unpipe(child.stdin) };
  }

  /**
   * `runc kill <id> KILL` until `runc run` returns: the container may not exist yet when a
   * timeout fires during start-up. After killGraceMs, SIGKILL runc itself; the `--keep`
   * state it leaves is removed by the caller's `runc delete -f`.
   */
  private async killUntilExit(
    id: string,
    runcPid: () => number | undefined,
    hasExited: () => boolean,
  ): Promise<void> {
    const deadline = Date.now() + this.killGraceMs;
    while (!hasExited()) {
      if (Date.now() > deadline) {
        const pid = runcPid();
        if (pid !== undefined) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        return;
      }
      // one SIGKILL to the init of a new pid namespace takes every process in it down
      await this.runc(['kill', id, 'KILL']).catch(() => undefined);
      await delay(KILL_RETRY_MS);
    }
  }

  /** Ids of the containers in our state root (running, created or stopped). */
  async list(): Promise<string[]> {
    const out = await this.runc(['list', '--format', 'json']);
    if (out.code !== 0) {
      throw new RuntimeError('RUNC_FAILED', `runc list failed: ${out.stderr.trim()}`);
    }
    const parsed = JSON.parse(out.stdout.trim() || 'null') as Array<{ id: string }> | null;
    return (parsed ?? []).map((c) => c.id);
  }

  /**
   * Deletes container `id` from our state root (with `force`, killing it first) and its
   * bundle dir. Resolves false when there was no such container.
   */
  async delete(id: string, options: { force?: boolean } = {}): Promise<boolean> {
    this.checkId(id);
    // `runc delete --force` succeeds for a missing id too, so ask first
    const state = await this.runc(['state', id]);
    const exists = state.code === 0;
    if (exists) {
      const out = await this.runc(['delete', ...(options.force ? ['--force'] : []), id]);
      if (out.code !== 0 && !isMissingContainer(out.stderr)) {
        throw new RuntimeError('RUNC_FAILED', `runc delete ${id} failed: ${out.stderr.trim()}`, { id });
      }
    }
    if (!this.active.has(id)) {
      await fs.rm(path.join(this.options.bundleDir, id), { recursive: true, force: true });
    }
    return exists;
  }

  /**
   * Force-deletes every container in our state root and removes bundle dirs, except those
   * of runs in flight in this instance. Call at worker start-up to clear a crashed
   * predecessor's leftovers. (Mount-point stubs a crashed run left in a rootfs are the
   * rootfs owner's to discard.)
   */
  async sweep(): Promise<SweepResult> {
    const containers: string[] = [];
    const listed = await this.list();
    for (const id of listed) {
      if (!this.active.has(id) && ID_PATTERN.test(id)) {
        await this.delete(id, { force: true });
        containers.push(id);
      }
    }
    if ((await this.runtimeFlavour()).kind === 'crun') {
      containers.push(...(await this.sweepRuncLeftovers(new Set(listed))));
    }
    await this.removeFreeSlots();
    const bundles: string[] = [];
    let entries: string[] = [];
    try {
      entries = await fs.readdir(this.options.bundleDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw err;
      }
    }
    let networkProcesses = 0;
    for (const name of entries) {
      if (!this.active.has(name)) {
        networkProcesses += await sweepSandboxProcesses(path.join(this.options.bundleDir, name));
        // a step's sysfs (user namespaces): never delete through a mount
        await unmountIn(path.join(this.options.bundleDir, name));
        await fs.rm(path.join(this.options.bundleDir, name), { recursive: true, force: true });
        bundles.push(name);
      }
    }
    return { containers, bundles, networkProcesses };
  }

  private checkId(id: string): void {
    if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
      throw new RuntimeError('OPTIONS_INVALID', `invalid container id ${JSON.stringify(id)}`);
    }
  }

  /**
   * What `runc delete` does for a container whose `runc run` returned, less the cgroup: its
   * init has exited, and with it every process of its pid namespace, so what is left is its
   * state dir (removed here, without starting the runtime once more) and its cgroup, an empty
   * slot the next run takes. Anything unexpected (no state dir) falls back to `delete --force`.
   * False when the container may be left.
   */
  private async removeStopped(id: string): Promise<boolean> {
    const dir = path.join(this.options.stateRoot, id);
    // runc's state.json, crun's status: this is a container's state dir
    const marker = (await this.runtimeFlavour()).kind === 'crun' ? 'status' : 'state.json';
    try {
      await fs.access(path.join(dir, marker));
      await fs.rm(dir, { recursive: true, force: true });
      return true;
    } catch {
      return this.forceDelete(id);
    }
  }

  /**
   * With crun: the containers a worker that ran its steps with runc left in the same state root
   * (a crash, then an upgrade that installed crun). crun's `list` does not see runc's
   * `state.json` dirs, so they are done here as `runc delete --force` does them: the init (its
   * pid namespace's, so every process in it) is killed if it is still the same process (its
   * start time), then its cgroups and state dir go.
   */
  private async sweepRuncLeftovers(listed: Set<string>): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.options.stateRoot);
    } catch {
      return [];
    }
    const swept: string[] = [];
    for (const id of names) {
      if (listed.has(id) || this.active.has(id) || !ID_PATTERN.test(id)) {
        continue;
      }
      const dir = path.join(this.options.stateRoot, id);
      let state: RuncState;
      try {
        state = JSON.parse(await fs.readFile(path.join(dir, 'state.json'), 'utf8')) as RuncState;
      } catch {
        continue; // not runc's
      }
      const pid = state.init_process_pid;
      const started = String(state.init_process_start);
      if (typeof pid === 'number' && pid > 1 && (await processStartTime(pid)) === started) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
        for (let i = 0; i < 100 && (await processStartTime(pid)) === started; i++) {
          await delay(20);
        }
      }
      try {
        // its own cgroup (a worker from before cgroup slots) or one of our slots
        const own = path.posix.join(this.cgroupParent, id);
        const ours = (dir: string): boolean =>
          dir.endsWith(own) ||
          (path.posix.dirname(dir).endsWith(this.cgroupParent) &&
            path.posix.basename(dir).startsWith(this.slotPrefix));
        await removeCgroups(runcCgroupDirs(state, ours));
      } catch (err) {
        this.warn(`sweeping runc's leftover ${id}: ${(err as Error).message}`);
        continue;
      }
      await fs.rm(dir, { recursive: true, force: true });
      swept.push(id);
    }
    return swept;
  }

  /** `runc delete --force`; false when it failed (the container may be left, sweep() clears it at the next start-up). */
  private async forceDelete(id: string): Promise<boolean> {
    const out = await this.runc(['delete', '--force', id]).catch((err: unknown) => ({
      code: 1,
      stdout: '',
      stderr: String(err),
    }));
    if (out.code !== 0 && !isMissingContainer(out.stderr)) {
      // the run's outcome stands
      this.warn(`runc delete -f ${id} failed: ${out.stderr.trim()}`);
      return false;
    }
    return true;
  }

  /**
   * Removes this runtime's cgroup slots that no run holds, in every hierarchy (at a worker's
   * start-up and shutdown). A slot still holding a process (rmdir: EBUSY) stays.
   */
  private async removeFreeSlots(): Promise<void> {
    let controllers: string[];
    try {
      controllers = await fs.readdir(CGROUP_ROOT);
    } catch {
      return;
    }
    const hierarchies = [CGROUP_ROOT, ...controllers.map((c) => path.join(CGROUP_ROOT, c))];
    for (const hierarchy of hierarchies) {
      const parent = path.join(hierarchy, this.cgroupParent);
      let names: string[];
      try {
        names = await fs.readdir(parent);
      } catch {
        continue;
      }
      for (const name of names) {
        const slot = name.startsWith(this.slotPrefix) ? Number(name.slice(this.slotPrefix.length)) : NaN;
        if (Number.isInteger(slot) && !this.slotsInUse.has(slot)) {
          await fs.rmdir(path.join(parent, name)).catch(() => undefined);
        }
      }
    }
  }

  private warn(message: string): void {
    if (this.options.onWarning) {
      this.options.onWarning(message);
    } else {
      process.emitWarning(message);
    }
  }

  /** runc's short commands (state, delete, kill, list), through the exec helper: no fork of this (large) process. */
  private async runc(args: string[]): Promise<RuncOutput> {
    const { hide } = await this.runtimeFlavour();
    const out = await execHelper.exec([this.options.runcPath, '--root', this.options.stateRoot, ...args], {
      hide,
    });
    return { code: out.code, stdout: out.stdout.toString('utf8'), stderr: out.stderr.toString('utf8') };
  }
}

/**
 * crun's annotation for a seccomp filter already compiled: it loads these bytes (base64 of the
 * BPF program) and does not compile the spec's seccomp section. Compiling Docker's profile
 * cost crun ~16 ms of CPU a container here (a step's spec, busybox `true`: 41-44 ms a run,
 * 27 ms given the compiled filter, 24 ms without any); the first run of a profile compiles
 * it, and its seccomp.bpf serves the later ones.
 * https://github.com/containers/crun/blob/main/crun.1.md (run.oci.seccomp_bpf_data)
 */
const SECCOMP_BPF_ANNOTATION = 'run.oci.seccomp_bpf_data';

/** How long {@link RuncRuntime.warmUp}'s container may take (it takes ~50 ms). */
const WARM_UP_TIMEOUT_MS = 10_000;

/** Which OCI runtime runs the containers, and the mounts it must not see. */
interface RuntimeFlavour {
  kind: 'runc' | 'crun';
  hide: string[];
}

/**
 * `argv` run in a mount namespace of its own with `hide` detached (util-linux unshare and
 * umount; for a run spawned here, not through the exec helper, which does it itself). When a
 * mount cannot be detached, `argv` does not run: the wrapper writes that mount's path to
 * `failed` and exits 125 (a status the container's own command may also end with, so the
 * caller tells the two apart by the file; see {@link hiddenMountFailure}).
 */
export function withHiddenMounts(argv: string[], hide: readonly string[], failed: string): string[] {
  if (hide.length === 0) {
    return argv;
  }
  const script =
    'n=$1; f=$2; shift 2; while [ "$n" -gt 0 ]; do umount -l "$1" || { printf %s "$1" > "$f"; exit 125; }; shift; n=$((n-1)); done; exec "$@"';
  return [
    '/usr/bin/unshare',
    '--mount',
    '--propagation',
    'slave',
    '--',
    '/bin/sh',
    '-c',
    script,
    'sh',
    String(hide.length),
    failed,
    ...hide,
    ...argv,
  ];
}

/**
 * The start error of a {@link withHiddenMounts} run that ended with status 125 because a
 * mount could not be detached (its `failed` file names it), else null: the status was the
 * command's own.
 */
export function hiddenMountFailure(exitCode: number | null, failed: string): string | null {
  if (exitCode !== 125) {
    return null;
  }
  let mount: string;
  try {
    mount = readFileSync(failed, 'utf8');
  } catch {
    return null;
  }
  return `cannot detach ${mount} before starting the OCI runtime (umount -l failed): the container did not start`;
}

/**
 * {@link DEFAULT_NOFILE} capped at our own hard limit: raising a hard limit needs
 * CAP_SYS_RESOURCE, which a worker in a container may not have (runc then fails with
 * "error setting rlimit type 7: operation not permitted").
 */
async function defaultNofile(): Promise<{ soft: number; hard: number }> {
  let hard: number = DEFAULT_NOFILE.hard;
  try {
    const limits = await fs.readFile('/proc/self/limits', 'utf8');
    const match = /^Max open files\s+\S+\s+(\d+)/m.exec(limits);
    if (match) {
      hard = Math.min(hard, Number(match[1]));
    }
  } catch {
    // not Linux /proc: keep the default and let runc say if it cannot
  }
  return { soft: Math.min(DEFAULT_NOFILE.soft, hard), hard };
}

/** The last error runc logged (JSON log format), or null. */
async function readRuncError(logFile: string): Promise<string | null> {
  let text: string;
  try {
    text = await fs.readFile(logFile, 'utf8');
  } catch {
    return null;
  }
  let message: string | null = null;
  for (const line of text.split('\n')) {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) {
        message = entry.msg;
      }
    } catch {
      // partial or non-JSON line
    }
  }
  return message;
}

/**
 * Host paths (inside rootfs) that runc will have to create to mount at `destinations`:
 * for each destination, the first missing component and everything below it, outermost first.
 */
async function missingMountPoints(rootfs: string, destinations: string[]): Promise<string[]> {
  // Each prefix (`/dev` of /dev, /dev/pts, /dev/shm, ...) is resolved and looked at once, and
  // the destinations are looked at side by side: ~10 of them, each a few thread-pool round
  // trips, took 24-39 ms in sequence while a build's layer exports kept the pool busy.
  const seen = new Map<string, Promise<{ host: string | null; exists: boolean }>>();
  const look = (prefix: string): Promise<{ host: string | null; exists: boolean }> => {
    let found = seen.get(prefix);
    if (found === undefined) {
      found = (async () => {
        const host = await resolveBeneath(rootfs, prefix).catch(loopAsNull);
        const exists =
          host !== null &&
          (await fs.lstat(host).then(
            () => true,
            () => false,
          ));
        return { host, exists };
      })();
      seen.set(prefix, found);
    }
    return found;
  };
  const perDestination = await Promise.all(
    destinations.map(async (destination) => {
      const parts = destination.split('/').filter((p) => p !== '');
      const prefixes = parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/'));
      let missingFrom = -1;
      for (let i = 0; i < prefixes.length; i++) {
        const { host, exists } = await look(prefixes[i]);
        if (host === null) {
          break;
        }
        if (!exists) {
          missingFrom = i;
          break;
        }
      }
      if (missingFrom === -1) {
        return [];
      }
      const hosts: string[] = [];
      for (const prefix of prefixes.slice(missingFrom)) {
        const { host } = await look(prefix);
        if (host !== null) {
          hosts.push(host);
        }
      }
      return hosts;
    }),
  );
  const missing: string[] = [];
  for (const host of perDestination.flat()) {
    if (!missing.includes(host)) {
      missing.push(host);
    }
  }
  return missing;
}

/** A symlink loop in an image's path: runc will fail on it itself; we just stop looking. */
function loopAsNull(err: unknown): null {
  if (err instanceof ConfineError) {
    return null;
  }
  throw err;
}

/** Removes, innermost first, the stubs runc created that are still empty. */
async function removeStubs(stubs: string[]): Promise<void> {
  for (const stub of [...stubs].reverse()) {
    try {
      const stat = await fs.lstat(stub);
      if (stat.isDirectory()) {
        await fs.rmdir(stub); // fails (ENOTEMPTY) if anything was put in it: keep it then
      } else if (stat.isFile() && stat.size === 0) {
        await fs.unlink(stub);
      }
    } catch {
      // gone already, not empty, or not ours to remove
    }
  }
}

/**
 * Lets every user pass through `dir` and its ancestors (adds o+x where missing, as dockerd
 * does to its root with userns-remap): runc prepares a container in a user namespace from
 * inside it, so the path to its rootfs and mount sources must be searchable by the
 * namespace's root. Nothing becomes listable or readable.
 */
export function makeTraversable(dir: string): void {
  let cur = path.resolve(dir);
  for (;;) {
    const st = statSync(cur);
    if ((st.mode & 0o001) === 0) {
      chmodSync(cur, (st.mode & 0o7777) | 0o001);
    }
    const parent = path.dirname(cur);
    if (parent === cur) {
      return;
    }
    cur = parent;
  }
}
