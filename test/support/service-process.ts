import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(__dirname, '../..');
export const API_MAIN = resolve(REPO, 'dist/apps/api/src/main.js');

/** A Stratum process (API or s3rver) run as a child: its output, and stop by its PID. */
export interface ServiceProcessHandle {
  readonly process: ChildProcess;
  output(): string;
  /** SIGTERM (or `signal`), then SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number, signal?: NodeJS.Signals): Promise<void>;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
}

function runChild(args: string[], env: NodeJS.ProcessEnv): ServiceProcessHandle {
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    process: child,
    output: () => out,
    exited: () => exit,
    stop: async (timeoutMs = 10_000, signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) {
        return;
      }
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

async function waitForLine(
  h: ServiceProcessHandle,
  line: RegExp,
  what: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!line.test(h.output())) {
    if (h.process.exitCode !== null || Date.now() > deadline) {
      await h.stop(1000);
      throw new Error(`${what} did not start:\n${h.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Runs the compiled API (`npm run build` first) as a child process on `env` (API_PORT and
 * API_HOST included) and waits until it listens. `waitReady: false` returns at once (a test
 * that expects it to refuse to start).
 */
export async function startApiProcess(
  env: Record<string, string>,
  options: { waitReady?: boolean; timeoutMs?: number } = {},
): Promise<ServiceProcessHandle> {
  if (!existsSync(API_MAIN)) {
    throw new Error(`${API_MAIN} is missing: run npm run build`);
  }
  const h = runChild([API_MAIN], {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    LOG_LEVEL: 'warn',
    PRETTY_LOGS: 'false',
    API_HOST: '127.0.0.1',
    ...env,
  });
  if (options.waitReady !== false) {
    await waitForLine(h, /stratum-api listening/, 'the API', options.timeoutMs ?? 30_000);
  }
  return h;
}

/** s3rver in a child process: SIGKILL stops it at once; start() again serves the same dir and port. */
export class S3rverProcess {
  private handle: ServiceProcessHandle | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'stratum-s3-'));

  /** `address`: where it listens (default loopback). */
  constructor(
    readonly port: number,
    readonly address = '127.0.0.1',
  ) {}

  get endpoint(): string {
    return `http://${this.address}:${this.port}`;
  }

  /** What the server wrote, and how it ended when it did (diagnostics of a failing test). */
  describe(): string {
    const p = this.handle?.process;
    const end = p === undefined ? 'not started' : `exit ${p.exitCode ?? '-'} signal ${p.signalCode ?? '-'}`;
    return `s3rver ${this.endpoint} (pid ${p?.pid ?? '?'}, ${end}): ${this.handle?.output() ?? ''}`;
  }

  /** The STORAGE=s3 settings of a process using this server. */
  env(bucket: string): Record<string, string> {
    return {
      STORAGE: 's3',
      S3_ENDPOINT: this.endpoint,
      S3_ACCESS_KEY: 'S3RVER',
      S3_SECRET_KEY: 'S3RVER',
      S3_BUCKET: bucket,
    };
  }

  async start(): Promise<void> {
    // s3rver removes a deleted object's directory once it is empty, racing a put into the same
    // directory (mkdirp, then open: ENOENT, an unhandled stream error that ends the server).
    // Several writers putting and deleting `tmp/<uuid>` objects hit it; empty directories are
    // harmless here, so its rmdir does nothing.
    const script =
      `require('fs-extra').rmdir = async () => undefined;` +
      `const S3rver = require('s3rver');` +
      `new S3rver({ address: ${JSON.stringify(this.address)}, port: ${this.port}, silent: true, directory: ${JSON.stringify(this.dir)} })` +
      `.run().then(() => process.stdout.write('s3rver ready\\n'), (e) => { console.error(e); process.exit(1); });`;
    this.handle = runChild(['-e', script], { PATH: process.env.PATH });
    await waitForLine(this.handle, /s3rver ready/, `s3rver on port ${this.port}`, 30_000);
  }

  async stop(): Promise<void> {
    await this.handle?.stop(5000, 'SIGKILL');
    this.handle = null;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
