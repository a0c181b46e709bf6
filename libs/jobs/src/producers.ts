import { Logger } from '@nestjs/common';
import { FlowProducer, JobsOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  BuildJobData,
  BuildRecord,
  BuildState,
  isTerminalBuildState,
  BuildPlatformJobData,
  CommitJobData,
  JobDataMap,
  JobName,
  platformQueueName,
  PushJobData,
  QueueName,
  RemoveContainerJobData,
  RunContainerJobData,
  workerQueueName,
} from '@stratum/contracts';
import { logErrorsThrottled, QUEUE_PREFIX } from './redis';

export interface ProducerSettings {
  readonly attempts: number;
  readonly retentionSeconds: number;
  /** Calls out of the system: attempts and first backoff (ms); default 15 and 5 s. */
  readonly outgoing?: { readonly attempts: number; readonly backoffMs: number };
}

/**
 * Job options for every job name, in one place (CONVENTIONS §5): the job id dedupes
 * (re-submitting the same id is a no-op), retries back off exponentially, finished jobs are
 * kept for the retention period so their results can be read.
 */
export function jobOptions(name: JobName, jobId: string, settings: ProducerSettings): JobsOptions {
  const keep = { age: settings.retentionSeconds };
  const base: JobsOptions = { jobId, removeOnComplete: keep, removeOnFail: keep };
  switch (name) {
    case JobName.Build:
    case JobName.BuildPlatform:
    case JobName.Commit:
    case JobName.RemoveContainer:
    case JobName.Push:
      // 3 s, 6 s, 12 s, 24 s…: with the default 5 attempts a job rides out a 20-30 s outage of
      // Redis-adjacent services or object storage (the chaos suite checks a storage outage).
      return { ...base, attempts: settings.attempts, backoff: { type: 'exponential', delay: 3000 } };
    case JobName.RunContainer:
      // A user's command may not be idempotent: run it once.
      return { ...base, attempts: 1 };
    case JobName.CommitStatus:
    case JobName.Notify: {
      // A forge may be down for a while: 5 s doubling, 15 attempts ride out about a day.
      const { attempts = 15, backoffMs = 5000 } = settings.outgoing ?? {};
      return { ...base, attempts, backoff: { type: 'exponential', delay: backoffMs } };
    }
  }
}

/** A typed producer for one queue. */
export class QueueProducer<N extends JobName> {
  constructor(
    readonly queue: Queue,
    protected readonly settings: ProducerSettings,
  ) {}

  async enqueue(name: N, jobId: string, data: JobDataMap[N]): Promise<void> {
    await this.queue.add(name, data, jobOptions(name, jobId, this.settings));
  }

  /** Removes a job that has not started. True when removed; false when active, finished or unknown. */
  async removeIfWaiting(jobId: string): Promise<boolean> {
    const job = await this.queue.getJob(jobId);
    if (!job) {
      return false;
    }
    const state = await job.getState();
    if (
      state === 'waiting' ||
      state === 'delayed' ||
      state === 'prioritized' ||
      state === 'waiting-children'
    ) {
      try {
        await job.remove();
        return true;
      } catch {
        return false; // taken by a worker in the meantime
      }
    }
    return false;
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}

/** The job id of a multi-platform build's child for `platform`: `<buildId>.linux-arm64`. */
export function platformJobId(buildId: string, platform: string): string {
  return `${buildId}.${platform.replace(/\//g, '-')}`;
}

export class BuildProducer extends QueueProducer<typeof JobName.Build> {
  private flow: FlowProducer | null = null;

  /**
   * A build. With `platforms` it is a BullMQ flow: the `build` job waits (waiting-children)
   * for one `build-platform` child per platform, each on its platform's queue
   * (`build.linux-arm64`, served only by workers that run that platform); the parent runs once
   * they are all done and tags their image or an index of them. A child that fails for good
   * fails the parent (failParentOnFailure) after recording the build's failure itself.
   */
  async submit(data: BuildJobData): Promise<void> {
    if (data.platforms === undefined || data.platforms.length === 0) {
      return this.enqueue(JobName.Build, data.buildId, data);
    }
    this.flow ??= new FlowProducer({ connection: this.queue.opts.connection, prefix: QUEUE_PREFIX });
    const { platforms, ...common } = data;
    await this.flow.add({
      name: JobName.Build,
      queueName: this.queue.name,
      data,
      opts: jobOptions(JobName.Build, data.buildId, this.settings),
      children: platforms.map((platform, position) => {
        const child: BuildPlatformJobData = { ...common, platform, position };
        return {
          name: JobName.BuildPlatform,
          queueName: platformQueueName(QueueName.Build, platform),
          data: child,
          opts: {
            ...jobOptions(JobName.BuildPlatform, platformJobId(data.buildId, platform), this.settings),
            failParentOnFailure: true,
          },
        };
      }),
    });
  }

  override async close(): Promise<void> {
    await Promise.all([super.close(), this.flow?.close()]);
    this.flow = null;
  }
}

type WorkerCommitJob = typeof JobName.Commit | typeof JobName.RemoveContainer;

/**
 * Container jobs. A run goes to the shared `commit` queue (any worker may run it); commits and
 * removals go to the queue of the worker whose host holds the container's upper dir
 * (`commit.<workerId>`, see workerQueueName), which only that worker consumes.
 */
export class CommitProducer extends QueueProducer<typeof JobName.RunContainer> {
  private readonly workerQueues = new Map<string, QueueProducer<WorkerCommitJob>>();

  constructor(
    queue: Queue,
    settings: ProducerSettings,
    /** Opens a queue by name (on the same connection as `queue`). */
    private readonly openQueue: (name: string) => Queue,
  ) {
    super(queue, settings);
  }

  runContainer(data: RunContainerJobData): Promise<void> {
    return this.enqueue(JobName.RunContainer, `run-${data.containerId}`, data);
  }

  /** Commits on the worker holding the container. */
  commit(workerId: string, data: CommitJobData): Promise<void> {
    return this.onWorker(workerId).enqueue(JobName.Commit, data.commitId, data);
  }

  /** Deletes a removed container's files on the worker holding them. */
  removeContainer(workerId: string, data: RemoveContainerJobData): Promise<void> {
    return this.onWorker(workerId).enqueue(JobName.RemoveContainer, `remove-${data.containerId}`, data);
  }

  /** The producer of worker `workerId`'s own queue. */
  onWorker(workerId: string): QueueProducer<WorkerCommitJob> {
    const name = workerQueueName(QueueName.Commit, workerId);
    let producer = this.workerQueues.get(name);
    if (producer === undefined) {
      producer = new QueueProducer<WorkerCommitJob>(this.openQueue(name), this.settings);
      this.workerQueues.set(name, producer);
    }
    return producer;
  }

  override async close(): Promise<void> {
    await Promise.all([super.close(), ...[...this.workerQueues.values()].map((p) => p.close())]);
    this.workerQueues.clear();
  }
}

export class PushProducer extends QueueProducer<typeof JobName.Push> {
  push(data: PushJobData): Promise<void> {
    return this.enqueue(JobName.Push, data.pushId, data);
  }
}

/**
 * Calls out of the system, one job per build change, added by the API's OutboxRelay from the
 * outbox stream (outbox.ts). Job ids are fixed by what they tell of, so the relay adding one
 * again after a crash is a no-op. Only builds of a project make a commit status job (the
 * processor finds whether the project has a forge token). Throws when Redis refuses: the relay
 * then tries the entry again.
 */
export class OutgoingProducer extends QueueProducer<typeof JobName.CommitStatus | typeof JobName.Notify> {
  /** Delivers what waits in `endpoint`'s outbox (one job per event: each drains it in order). */
  notify(endpoint: string, eventId: string): Promise<void> {
    return this.enqueue(JobName.Notify, `notify-${endpoint}-${eventId}`, { endpoint });
  }

  async buildChanged(record: BuildRecord): Promise<void> {
    if (record.source?.project === undefined || record.source.project === null) {
      return;
    }
    const phase =
      record.state === BuildState.Queued
        ? 'queued'
        : record.state === BuildState.Running
          ? 'running'
          : isTerminalBuildState(record.state)
            ? 'finished'
            : null;
    if (phase === null) {
      return;
    }
    await this.enqueue(JobName.CommitStatus, `status-${record.id}-${phase}`, { buildId: record.id, phase });
  }
}

/**
 * A queue by name: a QueueName, or a worker's own queue (workerQueueName). Its connection
 * errors while Redis is unreachable are logged once per 10 s ({@link logErrorsThrottled}).
 */
export function createQueue(name: string, connection: Redis): Queue {
  const queue = new Queue(name, { connection, prefix: QUEUE_PREFIX });
  logErrorsThrottled(queue, new Logger('Queue'), `queue ${name}`);
  return queue;
}
