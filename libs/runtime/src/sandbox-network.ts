import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import * as path from 'node:path';
import { execHelper, type HelperResult } from '@stratum/layers';
import { RuntimeError } from './runtime-error';

/**
 * The network a sandboxed step sees, as slirp4netns sets it up by default
 * (https://github.com/rootless-containers/slirp4netns/blob/v1.2.0/slirp4netns.1.md):
 * tap0 = 10.0.2.100/24, gateway and host alias 10.0.2.2, DNS forwarder 10.0.2.3.
 */
export const SLIRP_SUBNET = '10.0.2.0/24';
export const SLIRP_GUEST_ADDRESS = '10.0.2.100';
export const SLIRP_DNS = '10.0.2.3';

/** Programs the sandbox runs on the host; Debian paths by default. */
export interface SandboxTools {
  /** Debian package slirp4netns. Default /usr/bin/slirp4netns. */
  slirp4netns?: string;
  /** util-linux. Default /usr/bin/unshare. */
  unshare?: string;
  /** Debian package iptables (nf_tables backend). Default /usr/sbin/iptables-restore. */
  iptablesRestore?: string;
}

/** What {@link sandboxRules} refuses besides its fixed list, and where DNS goes. */
export interface SandboxAddresses {
  /** IPv4 addresses of the host's own interfaces (the API listens on 0.0.0.0). */
  hostAddresses: string[];
  /** Nameservers written into the step's resolv.conf. */
  nameservers: string[];
}

/** Every IPv4 address of this host's interfaces but loopback (the step's own `lo` answers those). */
export function hostIpv4Addresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv4' && !a.address.startsWith('127.')) {
        out.add(a.address);
      }
    }
  }
  return [...out].sort();
}

function isLoopbackOrLinkLocal(ip: string): boolean {
  return ip.startsWith('127.') || ip.startsWith('169.254.') || ip === '0.0.0.0';
}

/**
 * The nameservers a step should use: the host's own upstream ones (IPv4, not loopback, not
 * link-local, not an address of this host — the step cannot reach those), else slirp4netns's
 * forwarder, which reaches whatever the host uses (a loopback stub resolver included).
 */
export function stepNameservers(hostResolvConf: string, hostAddresses: readonly string[]): string[] {
  const upstream: string[] = [];
  for (const line of hostResolvConf.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const ip = m?.[1];
    if (
      ip !== undefined &&
      isIP(ip) === 4 &&
      !isLoopbackOrLinkLocal(ip) &&
      !hostAddresses.includes(ip) &&
      !ip.startsWith('10.0.2.') &&
      !upstream.includes(ip)
    ) {
      upstream.push(ip);
    }
  }
  return upstream.length > 0 ? upstream.slice(0, 3) : [SLIRP_DNS];
}

/** The step's /etc/resolv.conf: its nameservers, and the host's `search` and `options` lines as Docker copies them. */
export function stepResolvConf(hostResolvConf: string, nameservers: readonly string[]): string {
  const kept = hostResolvConf
    .split('\n')
    .filter((l) => /^\s*(search|domain|options)\s/.test(l))
    .map((l) => l.trim());
  return [...nameservers.map((n) => `nameserver ${n}`), ...kept].join('\n') + '\n';
}

/** The step's /etc/hosts: localhost and its own hostname (BuildKit and Podman write the same). */
export function stepHosts(hostname: string, address: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `${address}\t${hostname}`,
    '',
  ].join('\n');
}

/**
 * iptables-restore input for the step's own network namespace: its OUTPUT chain refuses the
 * host's addresses, link-local (cloud metadata services) and the slirp subnet (the gateway
 * 10.0.2.2 is the host's alias) except DNS on 10.0.2.3. TCP gets a reset (a prompt
 * "connection refused"), everything else an ICMP admin-prohibited. The step holds no
 * CAP_NET_ADMIN in that namespace, so it cannot flush these. Traffic on `lo` stays the step's.
 */
export function sandboxRules(addresses: SandboxAddresses): string {
  const refused = [SLIRP_SUBNET, '169.254.0.0/16', ...addresses.hostAddresses.map((a) => `${a}/32`)];
  const lines = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A OUTPUT -o lo -j ACCEPT',
    `-A OUTPUT -d ${SLIRP_DNS}/32 -p udp --dport 53 -j ACCEPT`,
    `-A OUTPUT -d ${SLIRP_DNS}/32 -p tcp --dport 53 -j ACCEPT`,
  ];
  for (const cidr of refused) {
    lines.push(`-A OUTPUT -d ${cidr} -p tcp -j REJECT --reject-with tcp-reset`);
    lines.push(`-A OUTPUT -d ${cidr} -j REJECT --reject-with icmp-admin-prohibited`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The name of the file in a bundle dir listing the sandbox's helper processes (for the sweep). */
export const SANDBOX_PIDS_FILE = 'sandbox.pids';

const READY_TIMEOUT_MS = 15_000;

/**
 * One step's sandboxed network: a network namespace held by a small process, the netfilter
 * rules of {@link sandboxRules} inside it, and slirp4netns giving it outbound NAT, the way
 * rootless Podman and BuildKit do it (slirp4netns `--configure --disable-host-loopback`).
 *
 * Both helpers are started by the worker's long-lived exec helper (@stratum/layers'
 * sandbox-ops.ts), not by forks of the worker, and end on their own when it ends (the worker
 * died): the holder (`cat`) at EOF on its stdin, slirp4netns when its `--exit-fd` closes.
 * {@link close} ends them at once; {@link sweepSandboxProcesses} kills any left anyway.
 */
export class SandboxNetwork {
  private closed = false;

  private constructor(
    private readonly key: string,
    /** `/proc/<holder>/ns/net`: what the container joins. */
    readonly netnsPath: string,
    /** The holder's and slirp4netns' pids. */
    private readonly pids: readonly number[],
  ) {}

  /**
   * Creates the namespace with its rules and starts slirp4netns; resolves when tap0 is up.
   * Writes the helpers' pids to `<dir>/sandbox.pids` for the start-up sweep.
   * @throws RuntimeError NETWORK_FAILED when a helper cannot be run or does not come up.
   */
  static async open(
    dir: string,
    addresses: SandboxAddresses,
    tools: SandboxTools = {},
  ): Promise<SandboxNetwork> {
    const rulesFile = path.join(dir, 'sandbox.rules');
    await fs.writeFile(rulesFile, sandboxRules(addresses), { mode: 0o600 });
    const key = randomBytes(8).toString('hex');
    let res: HelperResult;
    try {
      res = await execHelper.sandbox({
        op: 'open',
        key,
        // ping through ICMP datagram sockets for every group is set by the holder, not by runc:
        // a step in a user namespace may not write the sysctls of a namespace it does not own
        unshare: tools.unshare ?? '/usr/bin/unshare',
        iptablesRestore: tools.iptablesRestore ?? '/usr/sbin/iptables-restore',
        slirp4netns: tools.slirp4netns ?? '/usr/bin/slirp4netns',
        rules: rulesFile,
        timeoutMs: READY_TIMEOUT_MS,
      });
    } catch (err) {
      throw new RuntimeError('NETWORK_FAILED', `the sandbox network: ${(err as Error).message}`);
    }
    if (res.code !== 0) {
      throw new RuntimeError('NETWORK_FAILED', res.stderr.toString('utf8').trim());
    }
    const { pids } = JSON.parse(res.stdout.toString('utf8')) as { pids: number[] };
    const net = new SandboxNetwork(key, `/proc/${pids[0]}/ns/net`, pids);
    try {
      // (a worker that crashes before this line leaves nothing: both helpers end with it)
      await fs.writeFile(path.join(dir, SANDBOX_PIDS_FILE), `${pids.join('\n')}\n`);
    } catch (err) {
      await net.close();
      throw err;
    }
    return net;
  }

  /**
   * Whether the namespace's holder and slirp4netns still run (a network kept for a later run is
   * checked before it serves one: without slirp4netns it would reach nothing).
   */
  async alive(): Promise<boolean> {
    if (this.closed) {
      return false;
    }
    const running = await Promise.all(this.pids.map((pid) => isSandboxHelper(pid)));
    return running.every(Boolean);
  }

  /** Ends slirp4netns and the namespace's holder and waits for both (bounded). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    // a helper that died took both with it: nothing left to end
    await execHelper.sandbox({ op: 'close', key: this.key }).catch(() => undefined);
  }
}

/**
 * Kills sandbox helpers listed in `<bundle>/sandbox.pids` that are still alive and still the
 * programs we started (a pid may have been reused). Returns how many it killed.
 */
export async function sweepSandboxProcesses(bundle: string): Promise<number> {
  let text: string;
  try {
    text = await fs.readFile(path.join(bundle, SANDBOX_PIDS_FILE), 'utf8');
  } catch {
    return 0;
  }
  let killed = 0;
  for (const pid of text
    .split('\n')
    .map(Number)
    .filter((n) => Number.isSafeInteger(n) && n > 1)) {
    if (await isSandboxHelper(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone meanwhile
      }
    }
  }
  return killed;
}

/** Whether `pid` runs one of our sandbox helpers (the holder is a bare `cat`; slirp4netns carries our flags). */
async function isSandboxHelper(pid: number): Promise<boolean> {
  try {
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const name = path.basename(argv[0] ?? '');
    return (
      (name === 'cat' && argv.filter(Boolean).length === 1) ||
      (name === 'slirp4netns' && argv.some((a) => a.startsWith('--exit-fd=')))
    );
  } catch {
    return false; // gone
  }
}
