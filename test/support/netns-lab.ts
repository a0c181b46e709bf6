import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { requireTools } from './tools';

/**
 * Hosts as network namespaces (issue 20, multi-host tests): each "host" is a namespace of its
 * own (`ip netns add`) joined to the real host by a veth pair with a /30 of its own; the shared
 * services (Redis, S3) listen on one service address of the real host, on a veth pair of its
 * own, which every namespace reaches through its default route. Cutting one namespace's link or
 * firewalling it inside the namespace cuts that host only.
 *
 * Addresses come from one 10.213.R.0/24 that no address or route of the host touches (checked
 * at creation): host k has 10.213.R.4k+1 (real host side) and 10.213.R.4k+2 (its namespace),
 * the services 10.213.R.254.
 *
 * Each namespace is held by a process of its own (`unshare --net sleep`) and entered through
 * /proc/<pid>/ns/net; `ip netns attach` names it for `ip netns list`. The /run/netns bind
 * mounts alone are not relied on: on a shared machine something else may unmount them.
 */
export interface NetnsHost {
  /** The namespace's name (`ip netns list`); processes run in it with {@link command}. */
  readonly netns: string;
  /** The pid of the process holding the namespace. */
  readonly holderPid: number;
  /** Whether the namespace still exists (its holder lives). */
  alive(): boolean;
  /** Its address inside the namespace. */
  readonly address: string;
  /** The real host's end of its link. */
  readonly hostAddress: string;
  /** argv that runs `argv` inside the namespace (its network only: mounts stay the host's). */
  command(argv: readonly string[]): string[];
  /** `ip link set … up|down` on the namespace's end of its link: the host is cut off or back. */
  setLink(up: boolean): void;
  /** Drops (inside the namespace) what it sends to `port` of the service address, or stops doing so. */
  block(port: number, on: boolean): void;
  /** Runs a program inside the namespace and returns its stdout. */
  exec(argv: readonly string[]): string;
}

export interface NetnsLab {
  /** Where the shared services listen (reachable from the real host and every namespace). */
  readonly serviceAddress: string;
  readonly hosts: readonly NetnsHost[];
  /** Deletes the namespaces (their veths go with them) and the service link. */
  close(): void;
}

const ip = (...args: string[]): string =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** A 10.213.R.0/24 (R in 1..250) that no address or route of this host mentions. */
function freeSubnet(): number {
  const used = `${ip('-4', 'addr')}\n${ip('-4', 'route', 'show', 'table', 'all')}`;
  const taken = new Set([...used.matchAll(/\b10\.213\.(\d+)\./g)].map((m) => Number(m[1])));
  const start = 1 + (process.pid % 250);
  for (let i = 0; i < 250; i++) {
    const r = 1 + ((start - 1 + i) % 250);
    if (!taken.has(r)) {
      return r;
    }
  }
  throw new Error('every 10.213.R.0/24 is in use on this host: no free subnet for the netns lab');
}

/**
 * Creates `count` namespaces `stratum-<tag>-<pid>-<k>` and the service link. Interface names
 * carry the pid so that two runs at once do not clash (15 characters at most).
 */
export function createNetnsLab(tag: string, count: number): NetnsLab {
  requireTools('ip', 'iptables', 'nsenter', 'unshare', 'sleep');
  if (count < 1 || count > 60) {
    throw new Error(`a netns lab has 1 to 60 hosts, not ${count}`);
  }
  const r = freeSubnet();
  const id = `${process.pid % 100000}`;
  const serviceAddress = `10.213.${r}.254`;
  const svc = `smh${id}s`;
  const names: string[] = [];
  const holders: ChildProcess[] = [];
  const hosts: NetnsHost[] = [];
  const close = (): void => {
    for (const n of names) {
      try {
        ip('netns', 'del', n);
      } catch {
        // already gone (or its mount was: the holder below ends the namespace)
      }
    }
    for (const h of holders) {
      h.kill('SIGKILL'); // by its pid; the namespace and its veth end go with it
    }
    try {
      ip('link', 'del', svc);
    } catch {
      // already gone
    }
  };
  try {
    // The service address sits on a veth pair of the real host (no `dummy` module needed).
    ip('link', 'add', svc, 'type', 'veth', 'peer', 'name', `smh${id}p`);
    ip('addr', 'add', `${serviceAddress}/32`, 'dev', svc);
    ip('link', 'set', svc, 'up');
    ip('link', 'set', `smh${id}p`, 'up');
    for (let k = 0; k < count; k++) {
      const netns = `stratum-${tag}-${id}-${k}`;
      const outer = `smh${id}h${k}`;
      const inner = `smh${id}w${k}`;
      const hostAddress = `10.213.${r}.${4 * k + 1}`;
      const address = `10.213.${r}.${4 * k + 2}`;
      const holder = spawn('unshare', ['--net', '--', 'sleep', 'infinity'], { stdio: 'ignore' });
      holders.push(holder);
      const pid = holder.pid;
      if (pid === undefined) {
        throw new Error('unshare --net did not start');
      }
      const nsPath = `/proc/${pid}/ns/net`;
      const own = readlinkSync('/proc/self/ns/net');
      // unshare execs sleep once the namespace is made: wait until the pid is in another one
      const until = Date.now() + 5000;
      while (readlinkSync(nsPath) === own) {
        if (Date.now() > until || holder.exitCode !== null) {
          throw new Error(`unshare --net (pid ${pid}) did not make a network namespace`);
        }
        execFileSync('sleep', ['0.02']);
      }
      ip('netns', 'attach', netns, String(pid));
      names.push(netns);
      ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', String(pid));
      ip('addr', 'add', `${hostAddress}/30`, 'dev', outer);
      ip('link', 'set', outer, 'up');
      const inNs = (...args: string[]): string =>
        execFileSync('nsenter', [`--net=${nsPath}`, '--', ...args], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      inNs('ip', 'link', 'set', 'lo', 'up');
      inNs('ip', 'addr', 'add', `${address}/30`, 'dev', inner);
      inNs('ip', 'link', 'set', inner, 'up');
      inNs('ip', 'route', 'add', 'default', 'via', hostAddress);
      const rule = (port: number): string[] => [
        'OUTPUT',
        '-d',
        serviceAddress,
        '-p',
        'tcp',
        '--dport',
        String(port),
        '-j',
        'DROP',
      ];
      hosts.push({
        netns,
        holderPid: pid,
        alive: () => holder.exitCode === null && holder.signalCode === null,
        address,
        hostAddress,
        command: (argv) => ['nsenter', `--net=${nsPath}`, '--', ...argv],
        setLink: (up) => {
          inNs('ip', 'link', 'set', inner, up ? 'up' : 'down');
          if (up) {
            // the default route goes with the link; put it back
            inNs('ip', 'route', 'replace', 'default', 'via', hostAddress);
          }
        },
        block: (port, on) => {
          inNs('iptables', on ? '-A' : '-D', ...rule(port));
        },
        exec: (argv) => inNs(...argv),
      });
    }
  } catch (err) {
    close();
    throw err;
  }
  return { serviceAddress, hosts, close };
}
