import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { QueueName } from '@stratum/contracts';
import {
  BuildProducer,
  CommitProducer,
  OutgoingProducer,
  PushProducer,
  REDIS,
  WorkerRegistry,
  workerQueueIds,
} from '@stratum/jobs';
import { QUEUE_JOB_STATES, QueueHealth, QueueJobState, QueuesOverview } from './queues.dto';

/**
 * Reads queue health from BullMQ through the producers' Queue objects (no connection of its
 * own): job counts by state and the workers online. A worker's own queues (`commit.<id>`) are
 * found through the workers online on the shared queues and the queues' keys in Redis, so the
 * queue of a worker that is gone stays listed (no worker, its jobs waiting) while it holds jobs.
 */
@Injectable()
export class QueuesService {
  constructor(
    private readonly builds: BuildProducer,
    private readonly commits: CommitProducer,
    private readonly pushes: PushProducer,
    private readonly outgoing: OutgoingProducer,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly registry: WorkerRegistry,
  ) {}

  async overview(): Promise<QueuesOverview> {
    const shared: Queue[] = [this.builds.queue, this.commits.queue, this.pushes.queue];
    const sharedHealth = await Promise.all(shared.map((q) => health(q)));
    const workerIds = unique(sharedHealth.flatMap((q) => q.workers));
    // The per-worker queues (WORKER_QUEUE_JOBS: commit.<id> today) of the workers on `commit`,
    // and of every worker that ever had one (found in Redis): a gone worker's queue stays
    // listed, with no worker and the jobs waiting for it, until it is emptied.
    const committers = sharedHealth.find((q) => q.name === QueueName.Commit)?.workers ?? [];
    const known = await workerQueueIds(this.redis);
    const ids = unique([...committers, ...known]);
    const perWorker = ids.map((id) => this.commits.onWorker(id).queue);
    const liveness = new Map((await this.registry.all(ids)).map((w) => [w.workerId, w]));
    const workerHealth = await Promise.all(
      perWorker.map(async (q, i): Promise<QueueHealth> => {
        const gone = liveness.get(ids[i]);
        const goneSince =
          gone !== undefined && !gone.live && gone.goneSince !== null && !committers.includes(ids[i])
            ? new Date(gone.goneSince).toISOString()
            : null;
        return { ...(await health(q)), owner: { workerId: ids[i], goneSince } };
      }),
    );
    // Consumed by the API replicas, whose consumers are not build workers (left out of `workers`).
    const outgoing = await health(this.outgoing.queue);
    // An offline worker's queue that is empty is history, not a problem: left out.
    const shown = workerHealth.filter(
      (q, i) => committers.includes(ids[i]) || Object.values(q.counts).some((n) => n > 0),
    );
    return {
      queues: [...sharedHealth, ...shown, outgoing],
      workers: workerIds,
      at: new Date().toISOString(),
    };
  }
}

async function health(queue: Queue): Promise<QueueHealth> {
  const [raw, clients, paused] = await Promise.all([
    queue.getJobCounts(...QUEUE_JOB_STATES),
    queue.getWorkers(),
    queue.isPaused(),
  ]);
  const counts = Object.fromEntries(QUEUE_JOB_STATES.map((s) => [s, raw[s] ?? 0])) as Record<
    QueueJobState,
    number
  >;
  return { name: queue.name, counts, paused, workers: unique(clients.map(workerIdOf)) };
}

/**
 * A BullMQ worker names its Redis connections `<prefix>:<base64 queue>:w:<worker name>` (the
 * builder passes its WORKER_ID as the name); one worker holds more than one connection.
 */
export function workerIdOf(client: Record<string, string>): string {
  const raw = client.rawname ?? client.name ?? '';
  const at = raw.indexOf(':w:');
  return at >= 0 ? raw.slice(at + 3) : '(unnamed)';
}

function unique(values: string[]): string[] {
  return [...new Set(values)].sort();
}
