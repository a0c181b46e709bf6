import { ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { unmountUnder } from './tools';

const execFileAsync = promisify(execFile);

export interface DockerdHandle {
  /** The private daemon's own dir (data and exec roots, socket, client config). */
  readonly dir: string;
  /** `unix://…/docker.sock` */
  readonly socket: string;
  /** DOCKER_CONFIG of the `docker` client runs (where `docker login` keeps credentials). */
  readonly clientConfig: string;
  /** Runs `docker -H <socket> …args` and gives its stdout. */
  docker(...args: string[]): Promise<string>;
  /** SIGTERM, wait, unmount what it left below its dir, remove the dir. */
  stop(): Promise<void>;
}

/**
 * A private Docker Engine for interop tests: vfs storage, no iptables, ip6tables or bridge (it
 * changes nothing of the host's network), its own data/exec roots and socket, `insecureRegistry`
 * allowed over http. Waits (up to a minute) until it answers `docker version`.
 */
export async function startDockerd(
  insecureRegistry: string,
  clientEnv: NodeJS.ProcessEnv = {},
): Promise<DockerdHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-dockerd-'));
  const clientConfig = join(dir, 'client');
  await mkdir(clientConfig);
  const socket = `unix://${join(dir, 'docker.sock')}`;
  const daemon: ChildProcess = spawn(
    'dockerd',
    [
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--storage-driver=vfs',
      ...['--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec')],
      ...['--pidfile', join(dir, 'dockerd.pid'), '--host', socket],
      ...['--insecure-registry', insecureRegistry],
    ],
    { stdio: 'ignore' },
  );
  const docker = async (...args: string[]): Promise<string> =>
    (
      await execFileAsync('docker', ['-H', socket, ...args], {
        timeout: 120_000,
        env: { ...process.env, DOCKER_CONFIG: clientConfig, ...clientEnv },
      })
    ).stdout;
  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    // dockerd keeps its data root a private bind mount of itself where / is not shared (a
    // chroot) and does not always undo it: the dir could not be removed (EBUSY).
    unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await docker('version');
      return { dir, socket, clientConfig, docker, stop };
    } catch (err) {
      if (Date.now() > deadline || daemon.exitCode !== null) {
        await stop();
        throw err;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
