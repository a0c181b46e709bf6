/**
 * Queue and job names shared by the API (producers), the workers (processors) and the CLI.
 * One queue per kind of work, so each can be scaled and watched on its own.
 */
export const QueueName = {
  Build: 'build',
  Commit: 'commit',
  Push: 'push',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const JobName = {
  Build: 'build',
  RunContainer: 'run-container',
  Commit: 'commit',
  Push: 'push',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

/** Every queue and the job names it carries: a worker refuses to start unless each has exactly one handler. */
export const QUEUE_JOBS: Readonly<Record<QueueName, readonly JobName[]>> = {
  [QueueName.Build]: [JobName.Build],
  [QueueName.Commit]: [JobName.RunContainer, JobName.Commit],
  [QueueName.Push]: [JobName.Push],
};
