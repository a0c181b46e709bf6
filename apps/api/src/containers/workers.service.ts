import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { Job } from 'bullmq';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  CommitJobData,
  CommitState,
  ContainerRecord,
  ContainerState,
  JobName,
  StratumError,
} from '@stratum/contracts';
import {
  CommitProducer,
  ContainerRecordStore,
  KeepRecord,
  REDIS,
  WorkerLiveness,
  WorkerRegistry,
  workerQueueIds,
} from '@stratum/jobs';
import { WorkerRemoved, WorkerView } from './workers.dto';

/** Job states of a per-worker queue that still wait for its worker. */
const PENDING = ['waiting', 'prioritized', 'delayed', 'active'] as const;
/** Most jobs of one gone worker's queue failed per sweep (the next sweep takes the rest). */
const SWEEP_BATCH = 500;

/**
 * Workers as the containers see them: a container's files live on the host of the worker that
 * ran it, so its commits and removals wait on that worker's own queue. A worker gone (no
 * heartbeat) for CONTAINER_WORKER_TIMEOUT_MS does not make them wait forever: new requests are
 * refused at once and queued ones are failed by a sweep every few seconds (any API replica may
 * run it; each step is idempotent), with a message naming the worker and since when it is gone.
 * What a worker that never returns left (its container records, its queue, its registry entry)
 * is listed by {@link list} and dropped by {@link remove}.
 */
@Injectable()
export class WorkersService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('Workers');
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly registry: WorkerRegistry,
    private readonly records: ContainerRecordStore,
    private readonly commits: CommitProducer,
    @Inject(REDIS) private readonly redis: Redis,
  ) {}

  onModuleInit(): void {
    const every = Math.min(5000, Math.max(500, Math.floor(this.config.containerWorkerTimeoutMs / 4)));
    this.timer = setInterval(() => {
      if (this.sweeping === null) {
        this.sweeping = this.sweep()
          .catch((err: unknown) => this.logger.warn(`gone-worker sweep: ${String(err)}`))
          .finally(() => (this.sweeping = null));
      }
    }, every);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
    await this.sweeping;
  }

  /** Throws WORKER_GONE when `workerId`, holding container `containerId`, is gone past the timeout. */
  async requireReachable(workerId: string, containerId: string): Promise<void> {
    const w = await this.registry.liveness(workerId);
    if (this.pastTimeout(w)) {
      throw new StratumError('WORKER_GONE', this.goneMessage(w, containerId), {
        workerId,
        goneSince: new Date(w.goneSince ?? 0).toISOString(),
      });
    }
  }

  /** Every worker known: live ones, and gone ones with what they left. */
  async list(): Promise<WorkerView[]> {
    const [queueIds, containers] = await Promise.all([workerQueueIds(this.redis), this.records.list()]);
    const holders = containers.flatMap((c) => (c.workerId === null ? [] : [c.workerId]));
    const workers = await this.registry.all([...queueIds, ...holders]);
    return Promise.all(
      workers.map(async (w) => ({
        id: w.workerId,
        live: w.live,
        platforms: w.platforms,
        goneSince: w.goneSince === null ? null : new Date(w.goneSince).toISOString(),
        failsAfter:
          w.goneSince === null
            ? null
            : new Date(w.goneSince + this.config.containerWorkerTimeoutMs).toISOString(),
        containers: containers.filter((c) => c.workerId === w.workerId).map((c) => c.id),
        pendingJobs: queueIds.includes(w.workerId) ? await this.pendingCount(w.workerId) : 0,
      })),
    );
  }

  /**
   * Forgets a worker that is gone for good: its containers' records become `removed` (their
   * queued commits failed), its queue is deleted with its jobs, its registry entry dropped.
   * Refused while it is live: it still holds those files.
   */
  async remove(workerId: string): Promise<WorkerRemoved> {
    const [queueIds, containers] = await Promise.all([workerQueueIds(this.redis), this.records.list()]);
    const held = containers.filter((c) => c.workerId === workerId);
    const known = (await this.registry.all()).some((w) => w.workerId === workerId);
    if (!known && !queueIds.includes(workerId) && held.length === 0) {
      throw new StratumError('WORKER_UNKNOWN', `no worker "${workerId}" is known (live or gone)`);
    }
    const w = await this.registry.liveness(workerId);
    if (w.live) {
      throw new StratumError(
        'WORKER_LIVE',
        `worker ${workerId} is live; stop it first (its liveness record lapses ${this.config.worker.livenessTtlMs} ms after it dies)`,
      );
    }
    const reason = `worker ${workerId} that held container %s was removed (gone since ${new Date(w.goneSince ?? Date.now()).toISOString()})`;
    for (const c of held) {
      await this.records.update(c.id, (r) => {
        failWaitingCommits(r, null, reason.replace('%s', c.id));
        r.state = ContainerState.Removed;
      });
    }
    let jobs = 0;
    if (queueIds.includes(workerId)) {
      const queue = this.commits.onWorker(workerId).queue;
      jobs = await this.pendingCount(workerId);
      await queue.obliterate({ force: true });
    }
    await this.registry.forget(workerId);
    this.logger.log(
      `worker ${workerId} forgotten: ${held.length} container record(s), ${jobs} job(s) dropped`,
    );
    return { id: workerId, containers: held.length, jobs };
  }

  /** Fails what waits on the queues of workers gone past the timeout. */
  async sweep(): Promise<void> {
    const queueIds = await workerQueueIds(this.redis);
    if (queueIds.length === 0) {
      return;
    }
    for (const w of await this.registry.all(queueIds)) {
      if (queueIds.includes(w.workerId) && this.pastTimeout(w)) {
        await this.failPending(w);
      }
    }
  }

  private async failPending(w: WorkerLiveness): Promise<void> {
    const queue = this.commits.onWorker(w.workerId).queue;
    const jobs = (await queue.getJobs([...PENDING], 0, SWEEP_BATCH - 1)) as (Job | undefined)[];
    for (const job of jobs) {
      if (job === undefined) {
        continue;
      }
      const containerId = (job.data as { containerId?: unknown }).containerId;
      if (typeof containerId !== 'string') {
        continue;
      }
      const message = this.goneMessage(w, containerId);
      try {
        // Removed first: should the worker come back now, it finds no job rather than a failed commit.
        await job.remove();
      } catch (err) {
        // An active job stays locked until the dead worker's lock lapses; the next sweep retries.
        this.logger.debug(
          `job ${job.id ?? '?'} of gone worker ${w.workerId} not removed yet: ${String(err)}`,
        );
        continue;
      }
      if (job.name === JobName.Commit) {
        const { commitId } = job.data as CommitJobData;
        await this.records.update(containerId, (r) => {
          if (!failWaitingCommits(r, commitId, message)) {
            throw new KeepRecord();
          }
        });
      }
      this.logger.warn(`${job.name} job ${job.id ?? '?'} failed: ${message}`);
    }
  }

  private async pendingCount(workerId: string): Promise<number> {
    const counts = await this.commits.onWorker(workerId).queue.getJobCounts(...PENDING);
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }

  private pastTimeout(w: WorkerLiveness): boolean {
    return (
      !w.live && w.goneSince !== null && Date.now() - w.goneSince >= this.config.containerWorkerTimeoutMs
    );
  }

  private goneMessage(w: WorkerLiveness, containerId: string): string {
    const since = new Date(w.goneSince ?? Date.now()).toISOString();
    return (
      `worker ${w.workerId} that holds container ${containerId} is gone since ${since} ` +
      `(no heartbeat for more than CONTAINER_WORKER_TIMEOUT_MS=${this.config.containerWorkerTimeoutMs}); ` +
      `if it will not return, \`stratum workers rm ${w.workerId}\` removes what it left`
    );
  }
}

/** Marks queued/running commits (one, or all when `commitId` is null) failed; true when one was. */
function failWaitingCommits(r: ContainerRecord, commitId: string | null, message: string): boolean {
  let changed = false;
  for (const c of r.commits) {
    if (
      (commitId === null || c.id === commitId) &&
      (c.state === CommitState.Queued || c.state === CommitState.Running)
    ) {
      c.state = CommitState.Failed;
      c.error = message;
      c.finishedAt = new Date().toISOString();
      changed = true;
    }
  }
  return changed;
}
