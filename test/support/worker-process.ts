import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const REPO = resolve(__dirname, '../..');
export const WORKER_MAIN = resolve(REPO, 'dist/workers/builder/src/main.js');
export const CLI_MAIN = resolve(REPO, 'dist/apps/cli/src/main.js');
/** The `stratum` command as installed (package.json "bin"): a launcher that runs CLI_MAIN. */
export const CLI_BIN = resolve(REPO, 'apps/cli/bin/stratum');

export interface WorkerProcessHandle {
  readonly process: ChildProcess;
  /** Everything the worker wrote so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then SIGKILL when it has not exited after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Runs the compiled builder worker (`npm run build` first) as a child process and waits for
 * its "ready" line. `wrap` turns its argv into the one to spawn (a program that execs it, such
 * as nsenter into a network namespace: the child's pid stays the worker's).
 */
export async function startWorkerProcess(
  env: Record<string, string>,
  readyTimeoutMs = 20_000,
  wrap: (argv: string[]) => string[] = (argv) => argv,
): Promise<WorkerProcessHandle> {
  if (!existsSync(WORKER_MAIN)) {
    throw new Error(`${WORKER_MAIN} is missing: run npm run build`);
  }
  const [program, ...args] = wrap([process.execPath, WORKER_MAIN]);
  const child = spawn(program, args, {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      LOG_LEVEL: 'log',
      PRETTY_LOGS: 'false',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const stop = async (timeoutMs = 10_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + readyTimeoutMs;
  while (!/ready \(pid \d+\)/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop(1000);
      throw new Error(`worker did not become ready:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { process: child, output: () => out, stop };
}
