import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** A port the kernel says is free now (never 6379, 5000 or 5099). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (![6379, 5000, 5099].includes(port)) {
      return port;
    }
  }
}

export interface RedisServerHandle {
  readonly url: string;
  readonly port: number;
  /** Its working directory (the append-only file lives here, under appendonlydir/). */
  readonly dir: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts a real redis-server (Debian package) on a free port, in a temp dir, listening on
 * `bind` (default loopback).
 */
export async function startRedisServer(
  options: { appendonly?: boolean; bind?: string } = {},
): Promise<RedisServerHandle> {
  const port = await freePort();
  const bind = options.bind ?? '127.0.0.1';
  const dir = mkdtempSync(join(tmpdir(), 'stratum-redis-'));
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      bind,
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      options.appendonly === true ? 'yes' : 'no',
      '--daemonize',
      'no',
      // Redis refuses clients from any address but loopback unless told (no password here)
      ...(bind === '127.0.0.1' ? [] : ['--protected-mode', 'no']),
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://${bind}:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  probe.on('error', () => undefined);
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${port}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    port,
    dir,
    process: child,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
