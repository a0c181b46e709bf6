import { JobsOptions, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  BuildJobData,
  CommitJobData,
  JobDataMap,
  JobName,
  PushJobData,
  QueueName,
  RunContainerJobData,
} from '@stratum/contracts';
import { QUEUE_PREFIX } from './redis';

export interface ProducerSettings {
  readonly attempts: number;
  readonly retentionSeconds: number;
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
    case JobName.Commit:
    case JobName.Push:
      return { ...base, attempts: settings.attempts, backoff: { type: 'exponential', delay: 2000 } };
    case JobName.RunContainer:
      // A user's command may not be idempotent: run it once.
      return { ...base, attempts: 1 };
  }
}

/** A typed producer for one queue. */
export class QueueProducer<N extends JobName> {
  constructor(
    readonly queue: Queue,
    private readonly settings: ProducerSettings,
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

export class BuildProducer extends QueueProducer<typeof JobName.Build> {
  submit(data: BuildJobData): Promise<void> {
    return this.enqueue(JobName.Build, data.buildId, data);
  }
}

export class CommitProducer extends QueueProducer<typeof JobName.Commit | typeof JobName.RunContainer> {
  runContainer(data: RunContainerJobData): Promise<void> {
    return this.enqueue(JobName.RunContainer, `run-${data.containerId}`, data);
  }
  commit(data: CommitJobData): Promise<void> {
    return this.enqueue(JobName.Commit, data.commitId, data);
  }
}

export class PushProducer extends QueueProducer<typeof JobName.Push> {
  push(data: PushJobData): Promise<void> {
    return this.enqueue(JobName.Push, data.pushId, data);
  }
}

export function createQueue(name: QueueName, connection: Redis): Queue {
  return new Queue(name, { connection, prefix: QUEUE_PREFIX });
}
