import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTools } from './tools';

/** A real OpenSSH server (Debian's openssh-server) run as a child process of the test. */
export interface SshdHandle {
  /** The loopback address it listens on, port 22 (so `root@addr:/path` scp-like URLs reach it). */
  readonly host: string;
  /** Its host key's known_hosts line (`addr ssh-ed25519 AAAA…`). */
  readonly knownHostsLine: string;
  /** Stops sshd by its pid and removes its directory. */
  stop(): Promise<void>;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts sshd on port 22 of a random 127.x.y.z address (Linux answers all of 127/8 on `lo`, so
 * port 22 there is free without root's system sshd), with its own host key and
 * `authorized_keys` holding `authorizedKeys` (public key lines). Users log in as root with a key
 * only; a git client reaches a bare repository at `ssh://root@<host>/<abs path>` or
 * `root@<host>:<abs path>`.
 */
export async function startSshd(authorizedKeys: readonly string[]): Promise<SshdHandle> {
  requireTools('/usr/sbin/sshd', 'ssh-keygen');
  const dir = mkdtempSync(join(tmpdir(), 'stratum-sshd-'));
  execFileSync('ssh-keygen', [
    '-q',
    '-t',
    'ed25519',
    '-N',
    '',
    '-C',
    'test-sshd',
    '-f',
    join(dir, 'host_key'),
  ]);
  writeFileSync(join(dir, 'authorized_keys'), `${authorizedKeys.join('\n')}\n`, { mode: 0o600 });
  // sshd's privilege separation directory (made by the package's service, which is not running).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostPub = readFileSync(join(dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  let lastLog = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const host = `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(2, 255)}`;
    if (await canConnect(host, 22)) {
      continue;
    }
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `ListenAddress ${host}:22`,
        `HostKey ${join(dir, 'host_key')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitRootLogin prohibit-password',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr?.on('data', (c: Buffer) => {
      log = (log + c.toString()).slice(-8192);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let up = false;
    for (let i = 0; i < 50 && child.exitCode === null; i++) {
      if (await canConnect(host, 22)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!up) {
      if (child.exitCode === null && child.pid !== undefined) {
        process.kill(child.pid, 'SIGTERM');
      }
      await exited;
      lastLog = log;
      continue;
    }
    return {
      host,
      knownHostsLine: `${host} ${hostPub}`,
      stop: async () => {
        if (child.exitCode === null && child.pid !== undefined) {
          process.kill(child.pid, 'SIGTERM');
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`sshd did not start: ${lastLog}`);
}
