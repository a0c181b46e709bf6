/** The job states counted per queue (BullMQ's lists and sets; a paused queue keeps its jobs waiting). */
export const QUEUE_JOB_STATES = [
  'waiting',
  'prioritized',
  'delayed',
  'active',
  'waiting-children',
  'completed',
  'failed',
] as const;
export type QueueJobState = (typeof QUEUE_JOB_STATES)[number];

/** One queue's health: job counts by state and the workers consuming it now. */
export interface QueueHealth {
  /** `build`, `commit`, `push`, or a worker's own queue `commit.<workerId>`. */
  readonly name: string;
  readonly counts: Record<QueueJobState, number>;
  /** True when the queue is paused: its waiting jobs are not handed to workers. */
  readonly paused: boolean;
  /** Ids of the workers connected to this queue (BullMQ `getWorkers()`, by Redis client name). */
  readonly workers: string[];
  /**
   * A worker's own queue (`commit.<id>`): its worker, and since when that worker is gone (no
   * heartbeat), null while it is live. Its jobs fail CONTAINER_WORKER_TIMEOUT_MS after that.
   */
  readonly owner?: { readonly workerId: string; readonly goneSince: string | null };
}

/** `GET /api/v1/queues`. */
export interface QueuesOverview {
  readonly queues: QueueHealth[];
  /** Every worker id seen on any queue. */
  readonly workers: string[];
  readonly at: string;
}
