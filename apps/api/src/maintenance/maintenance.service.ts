import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, OnApplicationBootstrap, Optional } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { ContainerState, MaintenanceRun, StratumError } from '@stratum/contracts';
import { REDIS } from '@stratum/jobs';
import { RegistryService } from '@stratum/registry';
import {
  BLOB_STORE,
  BlobStore,
  QUOTA_LEDGER,
  QuotaUsage,
  RedisQuotaLedger,
  REPOSITORY_STORE,
  RepositoryStore,
} from '@stratum/storage';
import { ContainersService } from '../containers/containers.service';
import { ProjectBuilder } from '../projects/project-builder';
import { ProjectStore } from '../projects/project-store';
import { GarbageCollector } from './garbage-collector';
import { MaintenanceKeys, MaintenanceLock } from './maintenance-lock';
import { applyRetention } from './retention';

/** A temp blob write untouched this long belongs to a process that died. */
const STALE_TEMP_BLOB_MS = 10 * 60 * 1000;

/** Runs kept in the list `GET /api/v1/maintenance/runs` reads. */
const KEEP_RUNS = 200;
const GC_LOCK_TTL_MS = 10 * 60_000;
const FSCK_LOCK_TTL_MS = 10 * 60_000;

type Trigger = MaintenanceRun['trigger'];

/**
 * The API's maintenance: retention, expired upload sessions, abandoned containers and
 * garbage collection of blobs (one run, `gc`), and scheduled rebuilds of projects. Each run
 * takes a Redis lock so one replica runs it, and is recorded with what it freed.
 */
@Injectable()
export class MaintenanceService implements OnApplicationBootstrap {
  private readonly logger = new Logger('Maintenance');
  private readonly lock: MaintenanceLock;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(REPOSITORY_STORE) private readonly repositories: RepositoryStore,
    private readonly projects: ProjectStore,
    private readonly builder: ProjectBuilder,
    private readonly moduleRef: ModuleRef,
    @Optional() @Inject(QUOTA_LEDGER) private readonly quotas: RedisQuotaLedger | null = null,
  ) {
    this.lock = new MaintenanceLock(redis);
  }

  /** REPOSITORY_QUOTAS set for the first time or changed: count what the store holds now. */
  async onApplicationBootstrap(): Promise<void> {
    if (this.quotas !== null && (await this.quotas.stale())) {
      await this.lock.run('quota-recompute', GC_LOCK_TTL_MS, () => this.recomputeQuotas());
    }
  }

  /** REPOSITORY_QUOTAS usage per pattern (empty without quotas). */
  quotaUsage(): Promise<QuotaUsage[]> {
    return this.quotas?.usage() ?? Promise.resolve([]);
  }

  /**
   * Replaces the quota counters with what the repositories hold now (manifests and what they
   * name): images deleted since free their bytes here, as their blob links stay until then.
   */
  private async recomputeQuotas(): Promise<number> {
    if (this.quotas === null) {
      return 0;
    }
    const quotas = this.quotas;
    const held = await new GarbageCollector(this.blobs, this.repositories, this.redis).heldByRepository((r) =>
      quotas.counted(r),
    );
    await quotas.recompute(held);
    return held.size;
  }

  async runs(limit: number): Promise<MaintenanceRun[]> {
    const items = await this.redis.lrange(MaintenanceKeys.runs, 0, limit - 1);
    return items.map((json) => JSON.parse(json) as MaintenanceRun);
  }

  /** Retention, upload sessions, stale temp blobs, containers, then blob GC. MAINTENANCE_BUSY when another replica runs it. */
  async gc(trigger: Trigger): Promise<MaintenanceRun> {
    const done = await this.lock.run('gc', GC_LOCK_TTL_MS, () =>
      this.recorded('gc', trigger, async (freed, stats) => {
        const m = this.config.maintenance;
        const retention = await applyRetention(this.blobs, this.repositories, this.redis, {
          keepTags: m.retentionKeepTags,
          untaggedDays: m.retentionUntaggedDays,
          repositories: m.retentionRepositories,
        });
        freed.tags = retention.tags;
        freed.manifests = retention.manifests;
        freed.uploads = await this.moduleRef.get(RegistryService, { strict: false }).sweepUploads();
        // Partial blob writes of a killed process (worker or API) in the store's temp area.
        freed.tempBlobs = await this.blobs.sweepTemp(STALE_TEMP_BLOB_MS);
        freed.containers = await this.removeIdleContainers();
        const gc = await new GarbageCollector(this.blobs, this.repositories, this.redis).run({
          graceMs: m.gcGraceSeconds * 1000,
        });
        freed.blobs = gc.freed.blobs;
        freed.bytes = gc.freed.bytes;
        Object.assign(stats, gc.stats);
        if (this.quotas !== null) {
          stats.quotaRepositories = await this.recomputeQuotas();
        }
      }),
    );
    if (done === null) {
      throw new StratumError('MAINTENANCE_BUSY', 'garbage collection is running on another replica');
    }
    return done.value;
  }

  /**
   * fsck: re-hashes every blob in the store (fs or S3) and quarantines those whose bytes no
   * longer match their digest (BlobStore.verify). Counts go to the run's stats: `scanned`, `ok`,
   * `quarantined`, `missing` (deleted while listed), `bytes` read. MAINTENANCE_BUSY when another
   * replica runs it.
   */
  async fsck(trigger: Trigger): Promise<MaintenanceRun> {
    const done = await this.lock.run('fsck', FSCK_LOCK_TTL_MS, () =>
      this.recorded('fsck', trigger, async (freed, stats, detail) => {
        const counts = { scanned: 0, ok: 0, quarantined: 0, missing: 0, bytes: 0 };
        Object.assign(stats, counts);
        const bad: string[] = [];
        for await (const digest of this.blobs.list()) {
          stats.scanned++;
          const r = await this.blobs.verify(digest);
          stats[r.status]++;
          if (r.status !== 'missing') {
            stats.bytes += r.size;
          }
          if (r.status === 'quarantined') {
            bad.push(digest);
          }
        }
        freed.quarantined = stats.quarantined;
        if (bad.length > 0) {
          detail.quarantined = bad.slice(0, 20).join(' ') + (bad.length > 20 ? ` (+${bad.length - 20})` : '');
          this.logger.error(`fsck quarantined ${bad.length} blob(s): ${detail.quarantined}`);
        }
      }),
    );
    if (done === null) {
      throw new StratumError('MAINTENANCE_BUSY', 'fsck is running on another replica');
    }
    return done.value;
  }

  /** A scheduled build of a project's branch head. */
  async rebuild(name: string, trigger: Trigger): Promise<MaintenanceRun> {
    return this.recorded('rebuild', trigger, async (_freed, _stats, detail) => {
      const project = await this.projects.require(name);
      const branch = project.scheduleBranch ?? project.branches.find((b) => !b.endsWith('*')) ?? 'main';
      detail.project = name;
      detail.branch = branch;
      const sha = await this.builder.headOf(project, branch);
      const t = await this.builder.build(project, branch, sha, 'schedule');
      detail.sha = sha;
      if (t.buildId === null) {
        throw new Error(t.error ?? 'the build could not be started');
      }
      detail.buildId = t.buildId;
    });
  }

  /** Exited containers nobody touched for CONTAINER_IDLE_SECONDS are removed (as `docker rm`). */
  private async removeIdleContainers(): Promise<number> {
    let containers: ContainersService;
    try {
      containers = this.moduleRef.get(ContainersService, { strict: false });
    } catch {
      return 0;
    }
    const cutoff = Date.now() - this.config.maintenance.containerIdleSeconds * 1000;
    let removed = 0;
    for (const c of await containers.list()) {
      const last = Date.parse(c.finishedAt ?? c.createdAt);
      if (c.state === ContainerState.Exited && last < cutoff) {
        try {
          await containers.remove(c.id);
          removed++;
        } catch (err) {
          this.logger.warn(
            `container ${c.id} not removed: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      }
    }
    return removed;
  }

  private async recorded(
    task: MaintenanceRun['task'],
    trigger: Trigger,
    fn: (
      freed: Record<string, number>,
      stats: Record<string, number>,
      detail: Record<string, string>,
    ) => Promise<void>,
  ): Promise<MaintenanceRun> {
    const startedAt = new Date().toISOString();
    const freed: Record<string, number> = {};
    const stats: Record<string, number> = {};
    const detail: Record<string, string> = {};
    let error: string | null = null;
    try {
      await fn(freed, stats, detail);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      this.logger.warn(`${task} failed: ${error}`);
    }
    const run: MaintenanceRun = {
      id: randomUUID(),
      task,
      trigger,
      startedAt,
      finishedAt: new Date().toISOString(),
      status: error === null ? 'succeeded' : 'failed',
      error,
      freed,
      stats,
      ...(Object.keys(detail).length > 0 ? { detail } : {}),
    };
    await this.redis
      .multi()
      .lpush(MaintenanceKeys.runs, JSON.stringify(run))
      .ltrim(MaintenanceKeys.runs, 0, KEEP_RUNS - 1)
      .exec();
    if (error === null) {
      this.logger.log(`${task} (${trigger}): freed ${JSON.stringify(freed)}`);
    }
    return run;
  }

  /** For the scheduler: a fire time claimed by one replica only. */
  claim(slot: string, ttlMs: number): Promise<boolean> {
    return this.lock.claim(slot, ttlMs);
  }
}
