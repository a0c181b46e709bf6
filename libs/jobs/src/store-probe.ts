import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { DynamicModule, Inject, Logger, Module, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StorageConfig, StratumConfig } from '@stratum/config';
import { MARKER_STORE, MarkerStore } from '@stratum/storage';
import { REDIS } from './jobs.module';

/** Hash of the live processes' probes: field = process key, value = {@link ProbeEntry} JSON. */
export const STORE_PROBE_KEY = 'stratum:store-probes';

/** One process's probe, as kept in Redis. */
export interface ProbeEntry {
  readonly role: 'api' | 'worker';
  /** WORKER_ID, or the API's host name. */
  readonly name: string;
  readonly host: string;
  readonly pid: number;
  /** Where this process's store is, as it sees it (`fs:/srv/stratum/store`, `s3:http://minio:9000/stratum`). */
  readonly store: string;
  /** Its marker in the store (`probes/<marker>`) and what the marker holds. */
  readonly marker: string;
  readonly nonce: string;
  /** When it was last refreshed (ms since the epoch). */
  readonly at: number;
}

/** How a store config reads in a message. */
export function describeStore(storage: StorageConfig): string {
  return storage.kind === 'fs' ? `fs:${storage.root}` : `s3:${storage.endpoint}/${storage.bucket}`;
}

export interface StoreProbeOptions {
  readonly role: ProbeEntry['role'];
  readonly name: string;
  readonly store: string;
  /** How often the Redis entry is refreshed; one not refreshed for 3 times this is ignored and dropped. */
  readonly refreshMs?: number;
}

/**
 * The start-up check that every API replica and worker sees the same store (issue 20): with
 * `STORAGE=fs` on two hosts, or two data dirs, a worker's layers are invisible to the API and
 * every build failed after a minute of "blob unknown" retries. Each process writes a marker
 * (`probes/<name>` in the store, outside the blob namespace) and names it in Redis; at start a
 * process reads every live marker through its own store and refuses to run when one is missing
 * or holds something else, naming both sides. Whichever of two mismatched processes starts
 * second refuses. The Redis entry is refreshed every `refreshMs`; entries of processes that
 * died stop counting after three periods and are removed (with their marker) by the next check.
 */
export class StoreProbe {
  private readonly logger = new Logger('StoreProbe');
  private readonly field: string;
  private readonly marker: string;
  private readonly nonce = randomUUID();
  private readonly refreshMs: number;
  private published = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly markers: MarkerStore,
    private readonly options: StoreProbeOptions,
  ) {
    const id = randomUUID();
    this.field = `${options.role}:${options.name}:${hostname()}:${process.pid}:${id.slice(0, 8)}`;
    this.marker = `${options.role}-${id}`;
    this.refreshMs = options.refreshMs ?? 20_000;
  }

  /**
   * Writes this process's marker and checks everyone else's. Throws naming the process whose
   * marker this one cannot read; nothing of this process is left in Redis or the store then.
   */
  async start(): Promise<void> {
    await this.markers.write(this.marker, this.nonce);
    this.published = true;
    await this.refresh();
    const problems = await this.check();
    if (problems.length > 0) {
      await this.stop();
      throw new Error(
        `this ${this.options.role} (${this.options.name}, store ${this.options.store}) does not see the ` +
          `store the others use: ${problems.join('; ')}. Every API replica and worker must share one ` +
          `store: STORAGE=s3 with the same bucket, or STORAGE=fs with one DATA_DIR on a shared filesystem.`,
      );
    }
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) =>
        this.logger.warn(
          `could not refresh the store probe: ${err instanceof Error ? err.message : String(err)}`,
        ),
      );
    }, this.refreshMs);
    this.timer.unref();
  }

  /** Live entries whose marker this process cannot read, described. */
  async check(): Promise<string[]> {
    const entries = await this.redis.hgetall(STORE_PROBE_KEY);
    const staleBefore = Date.now() - 3 * this.refreshMs;
    const problems: string[] = [];
    for (const [field, raw] of Object.entries(entries)) {
      if (field === this.field) {
        continue;
      }
      let entry: ProbeEntry;
      try {
        entry = JSON.parse(raw) as ProbeEntry;
      } catch {
        await this.redis.hdel(STORE_PROBE_KEY, field);
        continue;
      }
      if (entry.at < staleBefore) {
        // A process that died: forget it, and its marker when it is in this store.
        await this.redis.hdel(STORE_PROBE_KEY, field);
        await this.markers.delete(entry.marker).catch(() => undefined);
        continue;
      }
      const seen = await this.markers.read(entry.marker);
      if (seen !== entry.nonce) {
        problems.push(
          `the probe probes/${entry.marker} that ${entry.role} ${entry.name} (pid ${entry.pid} on ${entry.host}, ` +
            `store ${entry.store}) wrote is ${seen === null ? 'not in' : 'different in'} this process's store`,
        );
      }
    }
    return problems;
  }

  /** Removes this process's entry and its marker. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    // Bounded: at shutdown Redis or the store may be gone, and a stop must never hang on them.
    await withTimeout(this.redis.hdel(STORE_PROBE_KEY, this.field), 2000);
    if (this.published) {
      await withTimeout(this.markers.delete(this.marker), 2000);
      this.published = false;
    }
  }

  private async refresh(): Promise<void> {
    const entry: ProbeEntry = {
      role: this.options.role,
      name: this.options.name,
      host: hostname(),
      pid: process.pid,
      store: this.options.store,
      marker: this.marker,
      nonce: this.nonce,
      at: Date.now(),
    };
    await this.redis.hset(STORE_PROBE_KEY, this.field, JSON.stringify(entry));
  }
}

/** Waits for `p` at most `ms`; failures and timeouts are ignored (best-effort clean-up). */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.catch(() => undefined),
    new Promise<void>((r) => {
      timer = setTimeout(r, ms);
    }),
  ]);
  clearTimeout(timer);
}

/** Runs a {@link StoreProbe} for the life of the application: checked at init, removed at shutdown. */
@Module({})
export class StoreProbeModule implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(StoreProbe) private readonly probe: StoreProbe) {}

  static forRoot(role: ProbeEntry['role']): DynamicModule {
    return {
      module: StoreProbeModule,
      providers: [
        {
          provide: StoreProbe,
          inject: [REDIS, MARKER_STORE, STRATUM_CONFIG],
          useFactory: (redis: Redis, markers: MarkerStore, config: StratumConfig) =>
            new StoreProbe(redis, markers, {
              role,
              name: role === 'worker' ? config.worker.id : hostname(),
              store: describeStore(config.storage),
            }),
        },
      ],
      exports: [StoreProbe],
    };
  }

  async onModuleInit(): Promise<void> {
    await this.probe.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.probe.stop();
  }
}
