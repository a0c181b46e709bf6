import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pollFor } from './chaos-support';

const REPO = resolve(__dirname, '../..');

/** s3rver in a child process: SIGKILL stops it at once; start() again serves the same dir and port. */
export class ChildS3rver {
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'stratum-chaos-s3-'));

  constructor(readonly port: number) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const script =
      `const S3rver = require('s3rver');` +
      `new S3rver({ address: '127.0.0.1', port: ${this.port}, silent: true, directory: ${JSON.stringify(this.dir)} })` +
      `.run().then(() => process.stdout.write('s3rver ready\\n'), (e) => { console.error(e); process.exit(1); });`;
    const child = spawn(process.execPath, ['-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await pollFor(
      `s3rver on port ${this.port}`,
      () => {
        if (child.exitCode !== null) {
          throw new Error(`s3rver exited with ${child.exitCode}: ${out}`);
        }
        return out.includes('s3rver ready') ? true : undefined;
      },
      30_000,
      100,
    );
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    this.child = null;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
