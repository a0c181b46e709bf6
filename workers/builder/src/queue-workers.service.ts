import { join } from 'node:path';
import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { DelayedError, Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  API_QUEUES,
  JobName,
  PLATFORM_QUEUE_JOBS,
  platformQueueName,
  QUEUE_JOBS,
  QueueName,
  WORKER_QUEUE_JOBS,
  workerQueueName,
} from '@stratum/contracts';
import {
  createRedis,
  logErrorsThrottled,
  platformJobId,
  QUEUE_PREFIX,
  RedisKeys,
  WorkerRegistry,
} from '@stratum/jobs';
import { BuildEngine, selfTestBuild, warmUpEngine } from '@stratum/engine';
import { RuncRuntime } from '@stratum/runtime';
import { BLOB_STORE, BlobStore } from '@stratum/storage';
import { HostSweeper } from './host-sweeper';
import { StoreHealthGate } from './store-health-gate';
import { AbortReason, JOB_HANDLERS, JobHandler } from './job-handler';
import { WorkerPlatforms } from './worker-platforms';
import { StepUserns } from './step-userns';

/**
 * The queues worker `workerId` consumes, with their job names: the shared queues
 * (QUEUE_JOBS), its own per-worker queues (WORKER_QUEUE_JOBS, `commit.<workerId>`) and the
 * queues of the platforms it builds for (PLATFORM_QUEUE_JOBS, `build.linux-arm64`).
 * Throws when the id cannot name a queue.
 */
export function servedQueues(
  workerId: string,
  platforms: readonly string[] = [],
): [string, readonly JobName[]][] {
  return [
    ...(Object.entries(QUEUE_JOBS) as [QueueName, readonly JobName[]][]).filter(
      ([queue]) => !API_QUEUES.includes(queue),
    ),
    ...(Object.entries(WORKER_QUEUE_JOBS) as [QueueName, readonly JobName[]][]).map(
      ([base, names]): [string, readonly JobName[]] => [workerQueueName(base, workerId), names],
    ),
    ...(Object.entries(PLATFORM_QUEUE_JOBS) as [QueueName, readonly JobName[]][]).flatMap(([base, names]) =>
      platforms.map((p): [string, readonly JobName[]] => [platformQueueName(base, p), names]),
    ),
  ];
}

/**
 * Checks that each job name of the served queues (shared and this worker's own) has exactly
 * one handler, and no handler is left without a queue. Throws at boot otherwise (CONVENTIONS §6).
 */
export function routeHandlers(
  handlers: readonly JobHandler[],
  workerId: string,
  platforms: readonly string[] = [],
): Map<string, Map<JobName, JobHandler>> {
  const byName = new Map<JobName, JobHandler[]>();
  for (const h of handlers) {
    byName.set(h.name, [...(byName.get(h.name) ?? []), h]);
  }
  const problems: string[] = [];
  const routes = new Map<string, Map<JobName, JobHandler>>();
  for (const [queue, names] of servedQueues(workerId, platforms)) {
    const served = names.filter((n) => byName.has(n));
    if (served.length === 0) {
      continue; // this worker does not serve that queue
    }
    const route = new Map<JobName, JobHandler>();
    for (const name of names) {
      const found = byName.get(name) ?? [];
      if (found.length !== 1) {
        problems.push(`job "${name}" of queue "${queue}" has ${found.length} handlers, needs exactly one`);
      } else {
        route.set(name, found[0]);
      }
    }
    routes.set(queue, route);
  }
  // A worker that takes a family's shared jobs (runs a container) must take its own queue's
  // too (commit and remove that container), and the other way round.
  for (const base of Object.keys(WORKER_QUEUE_JOBS) as QueueName[]) {
    const own = workerQueueName(base, workerId);
    if (routes.has(base) !== routes.has(own)) {
      problems.push(`queue "${base}" and this worker's queue "${own}" must be served together`);
    }
  }
  for (const name of byName.keys()) {
    if (![...routes.values()].some((r) => r.has(name))) {
      problems.push(`handler for "${name}" belongs to no queue`);
    }
  }
  if (problems.length > 0) {
    throw new Error(`worker cannot start:\n  - ${problems.join('\n  - ')}`);
  }
  return routes;
}

/** Runs one BullMQ worker per served queue; cancels jobs on request; shuts down gracefully. */
/** How long a job handed back during a store outage waits before any worker takes it again. */
const STORE_OUTAGE_HAND_BACK_MS = 1000;
/** The start-up self-test build gives up after this (a hung runtime must not hold the boot). */
const SELF_TEST_TIMEOUT_MS = 30_000;

@Injectable()
export class QueueWorkersService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('QueueWorkers');
  private readonly workers: Worker[] = [];
  private readonly connections: Redis[] = [];
  private readonly routes: Map<string, Map<JobName, JobHandler>>;
  /** Pauses taking jobs while object storage does not answer (queued jobs keep their attempts). */
  private readonly storeGate: StoreHealthGate;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(JOB_HANDLERS) handlers: JobHandler[],
    private readonly sweeper: HostSweeper,
    private readonly runtime: RuncRuntime,
    private readonly userns: StepUserns,
    private readonly platforms: WorkerPlatforms,
    private readonly registry: WorkerRegistry,
    @Inject(BLOB_STORE) blobs: BlobStore,
    private readonly engine: BuildEngine,
  ) {
    this.routes = routeHandlers(handlers, config.worker.id, platforms.served);
    this.storeGate = new StoreHealthGate(blobs, () => this.workers);
  }

  private advertTimer: NodeJS.Timeout | null = null;
  /** Ids of the jobs this worker runs now (in its liveness record, for a worker taking one over). */
  private readonly running = new Map<string, number>();

  /**
   * The liveness record (heartbeat): which platforms this worker builds for and which jobs it
   * runs, now and every WORKER_LOST_MS / 8, each record lasting 3/8 of it (lostWorkerTimings).
   */
  private async advertise(): Promise<void> {
    const { heartbeatMs, livenessTtlMs } = this.config.worker;
    const send = (): Promise<void> =>
      this.registry.advertise(this.config.worker.id, this.platforms.served, livenessTtlMs, [
        ...this.running.keys(),
      ]);
    await send();
    this.advertTimer = setInterval(() => {
      send().catch((err: unknown) => this.logger.warn(`liveness heartbeat: ${String(err)}`));
    }, heartbeatMs);
    this.advertTimer.unref();
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.sweeper.sweep();
    // the first sandboxed steps' networks, made while the queues connect (ended at shutdown)
    void this.runtime
      .makeSpares()
      .catch((err: unknown) => this.logger.warn(`sandbox spares: ${String(err)}`));
    // and the steps' seccomp filter, compiled by a throwaway container before any job is
    // taken (~50 ms; its container is gone before this worker says it is live), beside the
    // engine's one-time costs (compressor probe, first runs of the Dockerfile front end)
    await Promise.all([
      this.runtime
        .warmUp(this.userns.map !== null ? { userns: this.userns.map } : {})
        .catch((err: unknown) => this.logger.warn(`runtime warm-up: ${String(err)}`)),
      warmUpEngine().catch((err: unknown) => this.logger.warn(`engine warm-up: ${String(err)}`)),
    ]);
    // then a small image, built by a private engine (its stores on a tmpfs of its own in the
    // scratch dir, gone after):
    // a worker that cannot build learns it now, and the build path's code has run once
    const started = Date.now();
    await selfTestBuild(this.engine, join(this.sweeper.paths.scratch, 'self-test'), {
      signal: AbortSignal.timeout(SELF_TEST_TIMEOUT_MS),
    })
      .then((r) => {
        if (r !== null) {
          this.logger.log(`self-test build: ${r.steps} steps in ${r.ms} ms`);
        }
      })
      .catch((err: unknown) =>
        this.logger.warn(`self-test build failed after ${Date.now() - started} ms: ${String(err)}`),
      );
    for (const [queue, route] of this.routes) {
      const connection = createRedis(
        this.config.redisUrl,
        `stratum-worker-${this.config.worker.id}-${queue}`,
        this.config.redisSentinel,
      );
      this.connections.push(connection);
      const worker = new Worker(
        queue,
        async (job: Job, token?: string, signal?: AbortSignal) => {
          if (this.storeGate.outage !== null && token !== undefined) {
            // Taken by the blocking wait that was already under way when the gate paused this
            // worker (BullMQ's pause(true) does not cancel it): hand it back to the queue
            // without spending an attempt, for a worker that sees the store.
            this.logger.log(`${queue} job ${job.id ?? '?'} handed back: object storage does not answer here`);
            await job.moveToDelayed(Date.now() + STORE_OUTAGE_HAND_BACK_MS, token);
            throw new DelayedError();
          }
          const handler = route.get(job.name as JobName);
          if (!handler) {
            throw new Error(`no handler for job "${job.name}" on queue "${queue}"`);
          }
          const id = job.id ?? '';
          // Counted: a job redelivered here while its first run still goes is running twice.
          this.running.set(id, (this.running.get(id) ?? 0) + 1);
          try {
            return await handler.handle(job as never, signal ?? new AbortController().signal);
          } finally {
            const left = (this.running.get(id) ?? 1) - 1;
            if (left > 0) {
              this.running.set(id, left);
            } else {
              this.running.delete(id);
            }
          }
        },
        {
          connection,
          prefix: QUEUE_PREFIX,
          concurrency: this.config.worker.concurrency,
          name: this.config.worker.id,
          // A crashed worker's job is picked up again once its lock expires (stalled-job check):
          // at most lockDuration + stalledInterval <= WORKER_LOST_MS after it died.
          lockDuration: this.config.worker.lockDurationMs,
          lockRenewTime: this.config.worker.lockRenewMs,
          stalledInterval: this.config.worker.stalledIntervalMs,
          maxStalledCount: 2,
        },
      );
      worker.on('failed', (job, err) =>
        this.logger.warn(`${queue} job ${job?.id ?? '?'} failed: ${err.message}`),
      );
      if (route.has(JobName.Build)) {
        // The job was handed on (its lock lapsed while this worker stalled): its steps stop
        // here, so the worker taking it over does not wait for them (OldAttemptCheck).
        worker.on('lockRenewalFailed', (ids: string[]) => {
          for (const id of ids) {
            if (worker.cancelJob(id, AbortReason.LockLost)) {
              this.logger.warn(`${queue} job ${id}: lock lost (taken over elsewhere), stopping it here`);
            }
          }
        });
      }
      // Once per 10 s: while Redis is unreachable the worker reports every reconnect attempt.
      logErrorsThrottled(worker, this.logger, `${queue} worker`);
      this.workers.push(worker);
    }
    await this.subscribeToCancels();
    await this.advertise();
    this.storeGate.start();
    this.logger.log(
      `worker ${this.config.worker.id} serving ${[...this.routes.keys()].join(', ')} (concurrency ${this.config.worker.concurrency}; platforms ${this.platforms.served.join(', ')})`,
    );
  }

  private async subscribeToCancels(): Promise<void> {
    const sub = createRedis(
      this.config.redisUrl,
      `stratum-worker-${this.config.worker.id}-cancel`,
      this.config.redisSentinel,
    );
    this.connections.push(sub);
    sub.on('message', (_channel: string, jobId: string) => {
      // A build's id names its job and, for a multi-platform build, its platforms' child jobs.
      const ids = [jobId, ...this.platforms.served.map((p) => platformJobId(jobId, p))];
      for (const worker of this.workers) {
        for (const id of ids) {
          if (worker.cancelJob(id, AbortReason.Cancelled)) {
            this.logger.log(`cancelling job ${id}`);
          }
        }
      }
    });
    await sub.subscribe(RedisKeys.cancelChannel);
  }

  /**
   * Graceful shutdown: stop taking jobs and let running ones finish for up to the configured
   * timeout; then abort them as `shutdown`, which fails the attempt so BullMQ retries the job
   * on another worker.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.storeGate.stop();
    if (this.advertTimer !== null) {
      clearInterval(this.advertTimer);
      this.advertTimer = null;
    }
    // Best effort and bounded: with Redis unreachable the advert simply lapses.
    await Promise.race([
      this.registry.withdraw(this.config.worker.id).catch(() => undefined),
      new Promise((r) => setTimeout(r, 1000).unref()),
    ]);
    const closing = Promise.all(this.workers.map((w) => w.close()));
    const timedOut = await Promise.race([
      closing.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), this.config.worker.shutdownTimeoutMs).unref()),
    ]);
    if (timedOut) {
      this.logger.warn('shutdown timeout reached: aborting running jobs so they are retried elsewhere');
      for (const w of this.workers) {
        w.cancelAllJobs(AbortReason.Shutdown);
      }
      await closing;
    }
    for (const c of this.connections) {
      c.disconnect();
    }
    await this.runtime.closeSpare();
  }
}
