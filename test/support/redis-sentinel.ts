import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './redis-server';

/**
 * Redis high availability on loopback (issue 20): a real redis-server primary and replica
 * watched by three sentinels (`redis-server --sentinel`, the program Debian's redis-sentinel
 * package runs) on free ports, monitoring the primary as {@link SentinelRedis.name}.
 */
export interface SentinelRedis {
  readonly name: string;
  readonly primaryPort: number;
  readonly replicaPort: number;
  readonly sentinelPorts: readonly number[];
  /** REDIS_URL (the primary, for processes without Sentinel), REDIS_SENTINELS, REDIS_SENTINEL_NAME. */
  readonly env: Record<string, string>;
  /** A connection to one server (no retries), for INFO and WAIT; the caller disconnects it. */
  connect(port: number): Promise<Redis>;
  /** SIGKILLs the primary and resolves once it has exited. */
  killPrimary(): Promise<void>;
  /** Waits until the replica says it is the primary; the time it took from `since`. */
  promoted(since: number, timeoutMs?: number): Promise<number>;
  /** Stops every server by its pid and removes the directory. */
  close(): Promise<void>;
}

/** Polls `check` every 200 ms until it gives a value (a throw counts as none), for at most `ms`. */
export async function waitForValue<T>(
  what: string,
  check: () => Promise<T | undefined>,
  ms: number,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts primary, replica and three sentinels; resolves once the replica is in sync and every sentinel knows it. */
export async function startSentinelRedis(name = 'stratum'): Promise<SentinelRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-sentinel-'));
  const children: ChildProcess[] = [];
  const start = (args: string[]): ChildProcess => {
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    children.push(child);
    return child;
  };
  const connect = async (port: number): Promise<Redis> => {
    const r = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
    });
    r.on('error', () => undefined);
    await r.connect();
    return r;
  };
  const close = async (): Promise<void> => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const primaryPort = await freePort();
    const replicaPort = await freePort();
    const common = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'];
    const primary = start(['--port', String(primaryPort), '--dir', dir, ...common]);
    start([
      '--port',
      String(replicaPort),
      '--dir',
      dir,
      '--replicaof',
      '127.0.0.1',
      String(primaryPort),
      ...common,
    ]);
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      sentinelPorts.push(port);
      const conf = join(dir, `sentinel-${i}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
          '',
        ].join('\n'),
      );
      start([conf, '--sentinel']);
    }
    await waitForValue(
      'the replica to sync',
      async () => {
        const r = await connect(replicaPort);
        const info = await r.info('replication');
        r.disconnect();
        return info.includes('master_link_status:up') ? true : undefined;
      },
      20_000,
    );
    for (const port of sentinelPorts) {
      await waitForValue(
        `sentinel ${port} to see the replica`,
        async () => {
          const s = await connect(port);
          const replicas = (await s.call('SENTINEL', 'REPLICAS', name)) as unknown[];
          s.disconnect();
          return replicas.length > 0 ? true : undefined;
        },
        20_000,
      );
    }
    return {
      name,
      primaryPort,
      replicaPort,
      sentinelPorts,
      env: {
        REDIS_URL: `redis://127.0.0.1:${primaryPort}`,
        REDIS_SENTINELS: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
        REDIS_SENTINEL_NAME: name,
      },
      connect,
      killPrimary: async () => {
        if (primary.exitCode === null && primary.signalCode === null) {
          const exited = new Promise((r) => primary.once('exit', r));
          primary.kill('SIGKILL');
          await exited;
        }
      },
      promoted: async (since, timeoutMs = 30_000) =>
        waitForValue(
          'the replica to be promoted',
          async () => {
            const r = await connect(replicaPort);
            const info = await r.info('replication');
            r.disconnect();
            return info.includes('role:master') ? Date.now() - since : undefined;
          },
          timeoutMs,
        ),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
