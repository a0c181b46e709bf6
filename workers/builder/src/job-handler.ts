import { Job } from 'bullmq';
import { JobDataMap, JobName, JobResultMap } from '@stratum/contracts';

/** Injection token collecting every job handler of this worker. */
export const JOB_HANDLERS = Symbol('JOB_HANDLERS');

/** Why a running job's signal was aborted. */
export const AbortReason = {
  /** The user cancelled the build: record it as cancelled, do not retry. */
  Cancelled: 'cancelled',
  /** The worker is shutting down: fail the attempt so the job is retried elsewhere. */
  Shutdown: 'shutdown',
  /**
   * BullMQ could not renew the job's lock (this worker stalled or was cut off long enough for
   * the job to be handed on): stop, touching nothing of the build, which another worker runs now.
   */
  LockLost: 'lock-lost',
} as const;

/**
 * A processor for one job name. Processors are thin (CONVENTIONS §5): read the payload,
 * call the domain service, return the result.
 */
export interface JobHandler<N extends JobName = JobName> {
  readonly name: N;
  handle(job: Job<JobDataMap[N], JobResultMap[N], N>, signal: AbortSignal): Promise<JobResultMap[N]>;
}

/** Injection token of this worker's WORKER_ID (records name the worker of each attempt). */
export const WORKER_ID = Symbol('WORKER_ID');
