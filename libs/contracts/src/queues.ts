/**
 * Queue and job names shared by the API (producers), the workers (processors) and the CLI.
 * One queue per kind of work, so each can be scaled and watched on its own.
 */
export const QueueName = {
  Build: 'build',
  Commit: 'commit',
  Push: 'push',
  /** Calls out of the system (forge commit statuses): consumed by the API, never by a build worker. */
  Outgoing: 'outgoing',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const JobName = {
  Build: 'build',
  /** One platform's image of a multi-platform build: a child of its `build` job (a BullMQ flow). */
  BuildPlatform: 'build-platform',
  RunContainer: 'run-container',
  Commit: 'commit',
  RemoveContainer: 'remove-container',
  Push: 'push',
  CommitStatus: 'commit-status',
  Notify: 'notify',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

/**
 * Every shared queue and the job names it carries (any worker may take them): a worker refuses
 * to start unless each has exactly one handler.
 */
export const QUEUE_JOBS: Readonly<Record<QueueName, readonly JobName[]>> = {
  [QueueName.Build]: [JobName.Build],
  // Any worker may run a container; it then holds the container's upper dir (see below).
  [QueueName.Commit]: [JobName.RunContainer],
  [QueueName.Push]: [JobName.Push],
  [QueueName.Outgoing]: [JobName.CommitStatus, JobName.Notify],
};

/**
 * Shared queues the API consumes, never a build worker: calls out of the system, which must
 * not hold a build host's job slots (ARCHITECTURE: "Outgoing calls … their own queue").
 */
export const API_QUEUES: readonly QueueName[] = [QueueName.Outgoing];

/**
 * Queues every worker has one of, named by {@link workerQueueName}, which only that worker
 * consumes: jobs that must run on the host holding their files (a container's upper dir lives
 * on the worker that ran it).
 */
export const WORKER_QUEUE_JOBS: Readonly<Partial<Record<QueueName, readonly JobName[]>>> = {
  [QueueName.Commit]: [JobName.Commit, JobName.RemoveContainer],
};

/** What a worker id must look like to name a queue (BullMQ refuses `:` in queue names). */
export const WORKER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * The queue of `base` that only worker `workerId` consumes: `commit.<workerId>`. Throws when
 * the id cannot name a queue, so a worker with such an id refuses to start.
 */
export function workerQueueName(base: QueueName, workerId: string): string {
  if (!WORKER_ID_PATTERN.test(workerId)) {
    throw new Error(
      `worker id ${JSON.stringify(workerId)} cannot name a queue: use letters, digits, '_', '.', '-' (no ':')`,
    );
  }
  return `${base}.${workerId}`;
}

/**
 * Queues every platform has one of, named by {@link platformQueueName} (`build.linux-arm64`),
 * consumed only by workers that can run that platform: a multi-platform build's per-platform
 * child jobs go there, so each runs on a host that runs its platform (natively or emulated).
 */
export const PLATFORM_QUEUE_JOBS: Readonly<Partial<Record<QueueName, readonly JobName[]>>> = {
  [QueueName.Build]: [JobName.BuildPlatform],
};

/** The queue of `base` for `platform` (`linux/arm/v7` -> `build.linux-arm-v7`). */
export function platformQueueName(base: QueueName, platform: string): string {
  if (!/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/.test(platform)) {
    throw new Error(`platform ${JSON.stringify(platform)} cannot name a queue`);
  }
  return `${base}.${platform.replace(/\//g, '-')}`;
}
