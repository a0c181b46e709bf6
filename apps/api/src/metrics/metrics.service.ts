import { Inject, Injectable, Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { BuildRecord, BuildState, isTerminalBuildState } from '@stratum/contracts';
import { REDIS, RedisKeys } from '@stratum/jobs';
import { QUEUE_JOB_STATES } from '../queues/queues.dto';
import { QueuesService } from '../queues/queues.service';
import { BuildWindow, FINISHED_STEP_STATUSES, finishedSteps } from './build-metrics';
import { RegistryTrafficCounters } from './registry-traffic.middleware';

/** Marks a finished build as counted by some API replica (SET NX), so replicas never count one twice. */
const observedKey = (id: string): string => `stratum:metrics:observed:${id}`;

const STEP_SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/**
 * Prometheus metrics of this API process, on its own prom-client Registry.
 *
 * Gauges (builds by state, cache hit ratio, queue depth, workers online) are read on each
 * scrape: from the build records in Redis and BullMQ, so every replica reports the same
 * cluster-wide values.
 *
 * Counters and the step-duration histogram are fed from finished build records, also on
 * scrape: a build reaching a terminal state is observed once across all replicas (claimed with
 * SET NX in Redis, kept as long as the record), so summing the series of all replicas counts
 * each build once. The API does not sit on the worker's path (workers write records straight
 * to Redis), so reading the records is the one place that sees every build; on scrape rather
 * than on a timer, because nothing reads the values in between.
 */
@Injectable()
export class MetricsService implements RegistryTrafficCounters {
  readonly registry = new Registry();
  private readonly logger = new Logger('Metrics');
  /** Finished builds this process has already seen (claimed by it or by another replica). */
  private readonly observed = new Set<string>();

  private readonly builds = new Gauge({
    name: 'stratum_builds',
    help: 'Builds kept in the build index (BUILD_RETENTION_SECONDS), by state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  private readonly buildsFinished = new Counter({
    name: 'stratum_builds_finished_total',
    help: 'Builds that reached a terminal state, by state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  private readonly steps = new Counter({
    name: 'stratum_build_steps_total',
    help: 'Finished build steps by status: done (run), cached (cache hit), failed, cancelled',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  private readonly stepSeconds = new Histogram({
    name: 'stratum_build_step_duration_seconds',
    help: 'Duration of finished build steps, by status',
    labelNames: ['status'] as const,
    buckets: STEP_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  private readonly runningByWorker = new Gauge({
    name: 'stratum_builds_running_by_worker',
    help: 'Builds running now, by the worker (WORKER_ID) of their current attempt',
    labelNames: ['worker'] as const,
    registers: [this.registry],
  });
  private readonly takeovers = new Gauge({
    name: 'stratum_build_takeovers',
    help: 'Attempts that followed an attempt on another worker (lost worker), over the builds kept in the index',
    registers: [this.registry],
  });
  private readonly cacheHitRatio = new Gauge({
    name: 'stratum_build_cache_hit_ratio',
    help: 'cached / (cached + done) steps over the builds kept in the build index (NaN when none)',
    registers: [this.registry],
  });
  private readonly queueJobs = new Gauge({
    name: 'stratum_queue_jobs',
    help: 'Jobs per queue and state (BullMQ getJobCounts)',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
  });
  private readonly queueWorkers = new Gauge({
    name: 'stratum_queue_workers',
    help: 'Workers connected to each queue (BullMQ getWorkers)',
    labelNames: ['queue'] as const,
    registers: [this.registry],
  });
  private readonly workersOnline = new Gauge({
    name: 'stratum_workers_online',
    help: 'Distinct workers connected to any queue',
    registers: [this.registry],
  });
  private readonly blobPulledBytes = new Counter({
    name: 'stratum_registry_blob_pulled_bytes_total',
    help: 'Bytes of blobs sent by GET /v2/<name>/blobs/<digest>',
    registers: [this.registry],
  });
  private readonly blobPushedBytes = new Counter({
    name: 'stratum_registry_blob_pushed_bytes_total',
    help: 'Bytes of blob upload bodies received under /v2/<name>/blobs/uploads/',
    registers: [this.registry],
  });
  private readonly sourceUp = new Gauge({
    name: 'stratum_metrics_source_up',
    help: '1 when the last scrape could read the source (builds: Redis build records, queues: BullMQ)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly queues: QueuesService,
  ) {
    collectDefaultMetrics({ register: this.registry });
    // Series that exist before the first event, so rate() and absent() behave from the start.
    for (const state of Object.values(BuildState)) {
      this.builds.set({ state }, 0);
      if (isTerminalBuildState(state)) {
        this.buildsFinished.inc({ state }, 0);
      }
    }
    for (const status of FINISHED_STEP_STATUSES) {
      this.steps.inc({ status }, 0);
    }
    this.blobPulledBytes.inc(0);
    this.blobPushedBytes.inc(0);
  }

  pulled(bytes: number): void {
    this.blobPulledBytes.inc(bytes);
  }

  pushed(bytes: number): void {
    this.blobPushedBytes.inc(bytes);
  }

  /** Refreshes what is read on scrape, then renders the exposition text. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    await Promise.all([
      this.track('builds', () => this.refreshBuilds()),
      this.track('queues', () => this.refreshQueues()),
    ]);
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** A source that cannot be read leaves its last values and reports itself down. */
  private async track(source: string, refresh: () => Promise<void>): Promise<void> {
    try {
      await refresh();
      this.sourceUp.set({ source }, 1);
    } catch (err) {
      this.sourceUp.set({ source }, 0);
      this.logger.warn(`metrics: cannot read ${source}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async refreshBuilds(): Promise<void> {
    const window = new BuildWindow();
    const finished: BuildRecord[] = [];
    const seen = new Set<string>();
    await forEachBuild(this.redis, (record) => {
      window.add(record);
      seen.add(record.id);
      if (isTerminalBuildState(record.state) && !this.observed.has(record.id)) {
        finished.push(record);
      }
    });
    for (const [state, n] of Object.entries(window.byState)) {
      this.builds.set({ state }, n);
    }
    this.cacheHitRatio.set(window.cacheHitRatio());
    this.runningByWorker.reset();
    for (const [worker, n] of window.runningByWorker) {
      this.runningByWorker.set({ worker }, n);
    }
    this.takeovers.set(window.takeovers);
    await this.observeFinished(finished);
    // Forget builds whose record has expired: the set stays as large as the index.
    for (const id of this.observed) {
      if (!seen.has(id)) {
        this.observed.delete(id);
      }
    }
  }

  private async observeFinished(records: BuildRecord[]): Promise<void> {
    if (records.length === 0) {
      return;
    }
    const tx = this.redis.pipeline();
    for (const r of records) {
      tx.set(observedKey(r.id), '1', 'EX', this.config.buildRetentionSeconds, 'NX');
    }
    const claims = (await tx.exec()) ?? [];
    records.forEach((record, i) => {
      const [err, answer] = claims[i] ?? [null, null];
      if (err !== null) {
        return; // not claimed: tried again on the next scrape
      }
      this.observed.add(record.id);
      if (answer !== 'OK') {
        return; // another replica counted it
      }
      this.buildsFinished.inc({ state: record.state });
      for (const step of finishedSteps(record)) {
        this.steps.inc({ status: step.status });
        if (step.seconds !== null) {
          this.stepSeconds.observe({ status: step.status }, step.seconds);
        }
      }
    });
  }

  private async refreshQueues(): Promise<void> {
    const overview = await this.queues.overview();
    // Queues of workers that went away disappear instead of freezing at their last value.
    this.queueJobs.reset();
    this.queueWorkers.reset();
    for (const q of overview.queues) {
      for (const state of QUEUE_JOB_STATES) {
        this.queueJobs.set({ queue: q.name, state }, q.counts[state]);
      }
      this.queueWorkers.set({ queue: q.name }, q.workers.length);
    }
    this.workersOnline.set(overview.workers.length);
  }
}

/**
 * Visits every build record of the index, newest first, 200 at a time (only the current batch
 * is in memory; BuildRecordStore.list keeps every record it returns). Expired ids are skipped
 * here and pruned from the index by BuildRecordStore.list.
 */
async function forEachBuild(redis: Redis, visit: (record: BuildRecord) => void): Promise<void> {
  const ids = await redis.zrevrange(RedisKeys.buildIndex, 0, -1);
  for (let i = 0; i < ids.length; i += 200) {
    const raws = await redis.mget(ids.slice(i, i + 200).map((id) => RedisKeys.build(id)));
    for (const raw of raws) {
      if (raw !== null) {
        visit(JSON.parse(raw) as BuildRecord);
      }
    }
  }
}
