import { defaultRuntimePath } from '@stratum/config';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  contextTar,
  filesUnder,
  freePort,
  pollBuild,
  RedisServerHandle,
  removeWorkerRunDirs,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';

export { filesUnder };

/** Waits until `check` returns a value other than undefined, polling; fails naming `what`. */
export async function pollFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Overlay mount points under `dir`, from this process's mountinfo. */
export function overlayMountsUnder(dir: string): string[] {
  // mountinfo fields: id parent dev root mountpoint opts ... - fstype source superopts
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - overlay /.test(l))
    .map((l) => l.split(' ')[4].replace(/\\040/g, ' '))
    .filter((t) => t.startsWith(dir));
}

/** Ids of the runc containers in a runc root (empty when the root does not exist). */
export function runcContainers(root: string): string[] {
  try {
    // the worker's runtime (crun or runc): each reads only its own state dirs
    return execFileSync(defaultRuntimePath(), ['--root', root, 'list', '-q'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter((s) => s !== '');
  } catch {
    return [];
  }
}

/** Entries of a directory (empty when it does not exist). */
export function entriesOf(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Posts a build of `files` (or raw tar bytes) and returns the response. */
export async function submitBuild(
  apiUrl: string,
  files: Record<string, string | Buffer> | Buffer,
  query: Record<string, string> = {},
): Promise<request.Response> {
  const body = Buffer.isBuffer(files) ? files : await contextTar(files);
  return request(apiUrl)
    .post('/api/v1/builds')
    .query(query)
    .set('content-type', 'application/x-tar')
    .send(body);
}

/** Polls a build until it is in one of `states`; fails with the record otherwise. */
export async function waitForBuild(
  apiUrl: string,
  id: string,
  states: string[],
  timeoutMs: number,
): Promise<BuildRecord> {
  const last = await pollBuild(apiUrl, id, states, timeoutMs, 300);
  if (!states.includes(last.state)) {
    throw new Error(
      `build ${id} did not reach ${states.join('|')} in ${timeoutMs} ms; last record: ${JSON.stringify(last)}`,
    );
  }
  return last;
}

/** Whether a process with this pid still exists (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** The configuration file we ship for production Redis. */
export const INFRA_REDIS_CONF = resolve(__dirname, '../../infra/redis.conf');

/** A directive of a redis.conf file (`appendfsync` → `always`), or undefined when absent. */
export function redisConfSetting(file: string, name: string): string | undefined {
  const line = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((w) => w[0] === name);
  return line?.[1];
}

/**
 * A redis-server with an append-only file, restartable on its dir and port. By default the AOF
 * is fsynced on every write; with `configFile` (infra/redis.conf) it runs that file's settings,
 * only port and dir overridden.
 */
export class DurableRedis {
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'stratum-chaos-redis-'));

  private constructor(
    readonly port: number,
    private readonly configFile: string | undefined,
    private readonly extraArgs: readonly string[],
  ) {}

  /** `extraArgs` override settings (`['--appendfsync', 'everysec']`). */
  static async start(options: { configFile?: string; extraArgs?: string[] } = {}): Promise<DurableRedis> {
    const r = new DurableRedis(await freePort(), options.configFile, options.extraArgs ?? []);
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const where = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir];
    const child = spawn(
      'redis-server',
      this.configFile !== undefined
        ? [this.configFile, ...where, ...this.extraArgs]
        : [
            ...where,
            ...['--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no'],
            ...this.extraArgs,
          ],
      { stdio: 'ignore' },
    );
    this.child = child;
    const probe = new Redis(this.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
    });
    probe.on('error', () => undefined);
    await pollFor(
      `redis-server on port ${this.port}`,
      async () => {
        if (child.exitCode !== null) {
          throw new Error(`redis-server exited with ${child.exitCode}`);
        }
        try {
          await probe.connect();
          // the AOF is loaded once PING answers (LOADING errors before)
          await probe.ping();
          return true;
        } catch {
          probe.disconnect();
          return undefined;
        }
      },
      20_000,
      100,
    );
    probe.disconnect();
  }

  /** Stops the server, with SIGKILL (a crash) or SIGTERM. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    }
    this.child = null;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A redis-server, a data dir and the API, plus worker processes started and stopped by test. */
export interface ChaosStack {
  readonly redisServer: RedisServerHandle;
  readonly dataDir: string;
  readonly api: ApiServerHandle;
  /** The environment of the API (as worker `apiWorkerId`) and of each worker. */
  env(workerId: string): Record<string, string>;
  /** A worker process (dist/) with `env(workerId)`, stopped by stopWorkers() and close(). */
  startWorker(workerId: string): Promise<WorkerProcessHandle>;
  stopWorkers(): Promise<void>;
  /**
   * Once `killed` (worker `killedId`) runs a RUN container: starts worker `survivorId`, SIGKILLs
   * `killed` and waits for it to exit. The survivor.
   */
  killDuringRun(
    killed: WorkerProcessHandle,
    killedId: string,
    survivorId: string,
  ): Promise<WorkerProcessHandle>;
  /** Stops the workers, the API and redis-server; removes the data dir unless overlays stay mounted. */
  close(): Promise<void>;
}

/**
 * Starts redis-server and the API on a data dir `stratum-<name>-*`. Workers run one job at a
 * time, stop within 3 s and a job gets 3 attempts; `extraEnv` adds to or overrides that.
 */
export async function startChaosStack(
  name: string,
  apiWorkerId: string,
  extraEnv: Record<string, string> = {},
): Promise<ChaosStack> {
  const redisServer = await startRedisServer();
  const dataDir = mkdtempSync(join(tmpdir(), `stratum-${name}-`));
  const workers: WorkerProcessHandle[] = [];
  const env = (workerId: string): Record<string, string> => ({
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: workerId,
    WORKER_CONCURRENCY: '1',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    JOB_ATTEMPTS: '3',
    ...extraEnv,
  });
  const stopWorkers = async (): Promise<void> => {
    for (const w of workers.splice(0)) {
      await w.stop(10_000);
    }
  };
  const close = async (api?: ApiServerHandle): Promise<void> => {
    await stopWorkers();
    await api?.close();
    await redisServer.stop();
    if (overlayMountsUnder(dataDir).length === 0) {
      removeWorkerRunDirs(dataDir); // the workers' tmpfs dirs, which the data dir names
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
  let api: ApiServerHandle;
  try {
    api = await startApiServer(testConfig(env(apiWorkerId)));
  } catch (err) {
    await close();
    throw err;
  }
  const startWorker = async (workerId: string): Promise<WorkerProcessHandle> => {
    const w = await startWorkerProcess(env(workerId), 60_000);
    workers.push(w);
    return w;
  };
  return {
    redisServer,
    dataDir,
    api,
    env,
    startWorker,
    stopWorkers,
    killDuringRun: async (killed, killedId, survivorId) => {
      await pollFor(
        'the RUN container of the first worker',
        () => (runcContainers(join(dataDir, 'worker', killedId, 'runc')).length > 0 ? true : undefined),
        60_000,
        100,
      );
      const survivor = await startWorker(survivorId);
      killed.process.kill('SIGKILL');
      await pollFor(
        'the killed worker to exit',
        () => (killed.process.exitCode !== null || killed.process.signalCode !== null ? true : undefined),
        10_000,
      );
      return survivor;
    },
    close: () => close(api),
  };
}
