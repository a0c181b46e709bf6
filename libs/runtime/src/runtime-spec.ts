import { release } from 'node:os';
import * as path from 'node:path';
import type { OciMount, OciNamespace, OciResources, OciRuntimeSpec } from './oci-runtime-spec';
import { RuntimeError } from './runtime-error';
import { SeccompProfile, seccompFor } from './seccomp';

/** The OCI runtime-spec version we write (the one runc 1.1 implements). */
export const OCI_VERSION = '1.0.2';

/** PATH given to a process whose environment has none (Docker's default). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Docker's default capability set (moby oci/caps/defaults.go). Bounding, effective and
 * permitted get these; inheritable stays empty since CVE-2022-24769. A non-root process
 * loses them at execve unless a file capability grants them, as in Docker.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Docker's default masked paths (moby oci/defaults.go): bind-mounted over with /dev/null or an empty tmpfs. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Docker's default read-only paths (moby oci/defaults.go). */
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

/** Default RLIMIT_NOFILE, soft and hard (what dockerd's containers usually inherit). */
export const DEFAULT_NOFILE = { soft: 1048576, hard: 1048576 } as const;

/** A host path bind-mounted into the container: build cache mounts, secrets. */
export interface BindMount {
  /** Absolute host path. */
  source: string;
  /** Absolute path inside the container (resolved inside the rootfs by runc). */
  destination: string;
  readonly?: boolean;
}

/** A fresh tmpfs in the container (`RUN --mount=type=tmpfs`): gone when the process ends. */
export interface TmpfsMount {
  type: 'tmpfs';
  /** Absolute path inside the container. */
  destination: string;
  /** Size limit in bytes; the kernel's default (half the RAM) when unset. */
  sizeBytes?: number;
}

/**
 * `sandbox`: a network namespace the caller made (`netnsPath`), with outbound NAT and nothing of
 * the host reachable (see {@link RuncRuntime}); `none`: a new network namespace holding only
 * `lo`; `host`: the host's network, no namespace.
 */
export type NetworkMode = 'sandbox' | 'none' | 'host';

/** Numeric identity of the container process; see {@link resolveUser} for `USER` strings. */
export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

/** Everything {@link generateRuntimeSpec} needs; only `rootfs` and `args` are required. */
export interface RuntimeSpecOptions {
  /** Absolute path of the prepared root filesystem (e.g. an overlay mount). Stays writable. */
  rootfs: string;
  /** argv of the process; args[0] is looked up in the container's PATH by runc. */
  args: string[];
  /** `KEY=VALUE` strings or a map; `PATH` defaults to {@link DEFAULT_PATH}. */
  env?: string[] | Record<string, string>;
  /** Absolute working directory; runc creates it when missing. Default `/`. */
  cwd?: string;
  /** Default root (0:0). */
  user?: ProcessUser;
  /** Default `stratum`. */
  hostname?: string;
  /** Default `none`. */
  network?: NetworkMode;
  /** Extra bind and tmpfs mounts, after the standard ones, in this order (a later one may sit inside an earlier one). */
  mounts?: (BindMount | TmpfsMount)[];
  /** Memory limit in bytes (cgroup memory.limit_in_bytes / memory.max). */
  memoryBytes?: number;
  /** Memory + swap limit in bytes; left unset when omitted (needs swap accounting on cgroup v1). */
  memorySwapBytes?: number;
  /** Maximum number of tasks (processes and threads) in the container. */
  pidsLimit?: number;
  /** CPU quota in cores (e.g. 1.5), as a CFS quota over a 100 ms period. */
  cpus?: number;
  /** RLIMIT_NOFILE; default {@link DEFAULT_NOFILE} ({@link RuncRuntime} caps it at its own hard limit). */
  nofile?: { soft: number; hard: number };
  /** Sets no_new_privs (setuid binaries stop elevating). Default false, as in Docker. */
  noNewPrivileges?: boolean;
  /**
   * A Docker-format seccomp profile ({@link loadSeccompProfile}), resolved against the final
   * capabilities by {@link seccompFor}; none when unset.
   */
  seccompProfile?: SeccompProfile;
  /** Capability names (`CAP_` prefix optional); default {@link DEFAULT_CAPABILITIES}. */
  capabilities?: readonly string[];
  /** cgroup path for runc; absolute = from the hierarchy root. Default: runc chooses. */
  cgroupsPath?: string;
  /** Host files bound read-only at /etc/resolv.conf and /etc/hosts with `network: 'host'`. */
  hostNetworkFiles?: { resolvConf?: string; hosts?: string };
  /** With `network: 'sandbox'` (required there): the network namespace file the process joins. */
  netnsPath?: string;
  /**
   * Files bound read-only at /etc/resolv.conf and /etc/hosts with `sandbox` or `none`, as Docker
   * does: the step sees them, its layer never records them.
   */
  networkFiles?: { resolvConf?: string; hosts?: string };
  annotations?: Record<string, string>;
  /**
   * Runs the container in a new user namespace: its ids 0..count-1 are `uid`.. / `gid`.. on
   * the host (its root is an unprivileged user there). The rootfs and bind sources must show
   * the in-image owners shifted into the range (idmapped mounts), or the step sees `nobody`.
   */
  userns?: UsernsMapping;
  /**
   * Bind this host directory (a sysfs) read-only at /sys instead of mounting a new sysfs: in a
   * user namespace that does not own the network namespace it joins, the kernel refuses the
   * step a sysfs of its own.
   */
  sysfsSource?: string;
}

/** A user namespace's one contiguous range: container id n is host id `uid + n` / `gid + n`. */
export interface UsernsMapping {
  uid: number;
  gid: number;
  count: number;
}

function invalid(message: string): never {
  throw new RuntimeError('OPTIONS_INVALID', message);
}

function checkAbsolute(what: string, p: string): void {
  if (typeof p !== 'string' || !path.isAbsolute(p) || p.includes('\0')) {
    invalid(`${what} must be an absolute path, got ${JSON.stringify(p)}`);
  }
}

function checkCount(what: string, n: number | undefined): void {
  if (n !== undefined && !(Number.isSafeInteger(n) && n > 0)) {
    invalid(`${what} must be a positive integer, got ${String(n)}`);
  }
}

function checkId(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xfffffffe) {
    invalid(`${what} must be a uid/gid number, got ${String(n)}`);
  }
}

/** Normalises env to `KEY=VALUE` strings and adds PATH when absent. */
export function buildEnv(env: RuntimeSpecOptions['env']): string[] {
  const list = Array.isArray(env) ? [...env] : Object.entries(env ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const entry of list) {
    const eq = entry.indexOf('=');
    if (eq <= 0 || entry.includes('\0')) {
      invalid(`environment entry must be KEY=VALUE, got ${JSON.stringify(entry)}`);
    }
  }
  if (!list.some((e) => e.startsWith('PATH='))) {
    list.unshift(`PATH=${DEFAULT_PATH}`);
  }
  return list;
}

function standardMounts(): OciMount[] {
  // Docker's defaults (moby oci/defaults.go DefaultLinuxSpec)
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
  ];
}

function bindMount(source: string, destination: string, readonly: boolean): OciMount {
  return { destination, type: 'bind', source, options: ['rbind', 'rprivate', readonly ? 'ro' : 'rw'] };
}

/**
 * Builds the OCI runtime-spec `config.json` for one container process.
 * Namespaces: mount, pid, ipc, uts, cgroup, and network unless `network: 'host'` (with
 * `sandbox`, the caller's namespace at `netnsPath`).
 * The root filesystem stays writable so the caller's overlay upper dir records changes.
 * https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md
 * @throws RuntimeError OPTIONS_INVALID on a relative path, empty args or a bad limit.
 */
export function generateRuntimeSpec(options: RuntimeSpecOptions): OciRuntimeSpec {
  checkAbsolute('rootfs', options.rootfs);
  if (
    !Array.isArray(options.args) ||
    options.args.length === 0 ||
    options.args.some((a) => typeof a !== 'string')
  ) {
    invalid('args must be a non-empty list of strings');
  }
  const cwd = options.cwd ?? '/';
  checkAbsolute('cwd', cwd);
  checkCount('memoryBytes', options.memoryBytes);
  checkCount('memorySwapBytes', options.memorySwapBytes);
  checkCount('pidsLimit', options.pidsLimit);
  if (options.cpus !== undefined && !(Number.isFinite(options.cpus) && options.cpus > 0)) {
    invalid(`cpus must be a positive number, got ${String(options.cpus)}`);
  }
  const user = options.user ?? { uid: 0, gid: 0 };
  checkId('uid', user.uid);
  checkId('gid', user.gid);
  (user.additionalGids ?? []).forEach((g) => checkId('additional gid', g));
  const nofile = options.nofile ?? DEFAULT_NOFILE;
  checkCount('nofile.soft', nofile.soft);
  checkCount('nofile.hard', nofile.hard);
  if (nofile.soft > nofile.hard) {
    invalid('nofile.soft must not exceed nofile.hard');
  }
  const network = options.network ?? 'none';

  let capabilities = (options.capabilities ?? DEFAULT_CAPABILITIES).map((c) => {
    const name = c.toUpperCase();
    return name.startsWith('CAP_') ? name : `CAP_${name}`;
  });

  const namespaces: OciNamespace[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
    { type: 'cgroup' },
  ];
  const userns = options.userns;
  if (userns !== undefined) {
    checkId('userns.uid', userns.uid);
    checkId('userns.gid', userns.gid);
    checkCount('userns.count', userns.count);
    namespaces.push({ type: 'user' });
  }
  const sysctl: Record<string, string> = {};
  if (network === 'none') {
    // a fresh network namespace holds only a loopback device (runc brings it up)
    namespaces.push({ type: 'network' });
  } else if (network === 'sandbox') {
    if (options.netnsPath === undefined) {
      invalid("network 'sandbox' needs netnsPath");
    }
    checkAbsolute('netnsPath', options.netnsPath);
    namespaces.push({ type: 'network', path: options.netnsPath });
    // CAP_NET_RAW would let the step write frames straight onto the tap device (AF_PACKET),
    // past the namespace's netfilter rules, to any host address slirp4netns can reach. Podman
    // drops it by default for the same reason; ping keeps working through ICMP datagram
    // sockets, which this sysctl opens to every group.
    capabilities = capabilities.filter((c) => c !== 'CAP_NET_RAW');
    // In a user namespace the step may not write the sysctls of a network namespace it does not
    // own: the sandbox sets this one itself when it makes the namespace (sandbox-network.ts).
    if (userns === undefined) {
      sysctl['net.ipv4.ping_group_range'] = '0 2147483647';
    }
  }

  const mounts = standardMounts();
  if (options.sysfsSource !== undefined) {
    checkAbsolute('sysfsSource', options.sysfsSource);
    const sys = mounts.findIndex((m) => m.destination === '/sys');
    mounts[sys] = {
      destination: '/sys',
      type: 'bind',
      source: options.sysfsSource,
      options: ['rbind', 'rprivate', 'nosuid', 'noexec', 'nodev', 'ro'],
    };
  }
  if (network === 'host') {
    const files = options.hostNetworkFiles ?? {};
    mounts.push(bindMount(files.resolvConf ?? '/etc/resolv.conf', '/etc/resolv.conf', true));
    mounts.push(bindMount(files.hosts ?? '/etc/hosts', '/etc/hosts', true));
  } else if (options.networkFiles !== undefined) {
    const files = options.networkFiles;
    if (files.resolvConf !== undefined) {
      checkAbsolute('networkFiles.resolvConf', files.resolvConf);
      mounts.push(bindMount(files.resolvConf, '/etc/resolv.conf', true));
    }
    if (files.hosts !== undefined) {
      checkAbsolute('networkFiles.hosts', files.hosts);
      mounts.push(bindMount(files.hosts, '/etc/hosts', true));
    }
  }
  for (const m of options.mounts ?? []) {
    checkAbsolute('mount destination', m.destination);
    if ('type' in m) {
      checkCount('tmpfs size', m.sizeBytes);
      mounts.push({
        destination: path.posix.normalize(m.destination),
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', ...(m.sizeBytes !== undefined ? [`size=${m.sizeBytes}`] : [])],
      });
      continue;
    }
    checkAbsolute('mount source', m.source);
    mounts.push(bindMount(m.source, path.posix.normalize(m.destination), m.readonly === true));
  }

  const resources: OciResources = { devices: [{ allow: false, access: 'rwm' }] };
  if (options.memoryBytes !== undefined || options.memorySwapBytes !== undefined) {
    resources.memory = {};
    if (options.memoryBytes !== undefined) {
      resources.memory.limit = options.memoryBytes;
    }
    if (options.memorySwapBytes !== undefined) {
      resources.memory.swap = options.memorySwapBytes;
    }
  }
  if (options.pidsLimit !== undefined) {
    resources.pids = { limit: options.pidsLimit };
  }
  if (options.cpus !== undefined) {
    resources.cpu = { period: 100000, quota: Math.max(1000, Math.round(options.cpus * 100000)) };
  }

  const spec: OciRuntimeSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid, umask: 0o022, additionalGids: [...(user.additionalGids ?? [])] },
      args: [...options.args],
      env: buildEnv(options.env),
      cwd: path.posix.normalize(cwd),
      capabilities: {
        bounding: [...capabilities],
        effective: [...capabilities],
        permitted: [...capabilities],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile.hard, soft: nofile.soft }],
      noNewPrivileges: options.noNewPrivileges === true,
    },
    root: { path: options.rootfs, readonly: false },
    hostname: options.hostname ?? 'stratum',
    mounts,
    linux: {
      namespaces,
      resources,
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  if (userns !== undefined) {
    spec.linux.uidMappings = [{ containerID: 0, hostID: userns.uid, size: userns.count }];
    spec.linux.gidMappings = [{ containerID: 0, hostID: userns.gid, size: userns.count }];
  }
  if (Object.keys(sysctl).length > 0) {
    spec.linux.sysctl = sysctl;
  }
  if (options.seccompProfile !== undefined) {
    spec.linux.seccomp = seccompFor(options.seccompProfile, capabilities, process.arch, release());
  }
  if (options.cgroupsPath !== undefined) {
    spec.linux.cgroupsPath = options.cgroupsPath;
  }
  if (options.annotations) {
    spec.annotations = { ...options.annotations };
  }
  return spec;
}
