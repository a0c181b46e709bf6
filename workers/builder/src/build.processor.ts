import { Injectable, Logger } from '@nestjs/common';
import { Job, UnrecoverableError } from 'bullmq';
import { BuildEngine, isUserBuildError } from '@stratum/build';
import { BuildJobData, BuildJobResult, BuildState, JobName } from '@stratum/contracts';
import { BuildRecordStore } from '@stratum/jobs';
import { BuildEventSink } from './build-event-sink';
import { AbortReason, JobHandler } from './job-handler';

/**
 * Thin processor for `build` jobs: moves the record through its states and hands the work to
 * the engine. A user's mistake (bad Dockerfile, failing RUN) fails without retry; a fault of
 * the host or a shutdown fails the attempt so BullMQ retries it, possibly on another worker.
 */
@Injectable()
export class BuildProcessor implements JobHandler<typeof JobName.Build> {
  readonly name = JobName.Build;
  private readonly logger = new Logger('BuildProcessor');

  constructor(
    private readonly records: BuildRecordStore,
    private readonly engine: BuildEngine,
  ) {}

  async handle(
    job: Job<BuildJobData, BuildJobResult, typeof JobName.Build>,
    signal: AbortSignal,
  ): Promise<BuildJobResult> {
    const { buildId } = job.data;
    const done = (
      state: BuildJobResult['state'],
      imageDigest: BuildJobResult['imageDigest'] = null,
    ): BuildJobResult => ({
      buildId,
      state,
      imageDigest,
    });
    const existing = await this.records.get(buildId);
    if (existing === null) {
      throw new UnrecoverableError(`build ${buildId} has no record (expired?)`);
    }
    if (existing.state === BuildState.Succeeded) {
      return done('succeeded', existing.imageDigest); // a retried job whose first attempt finished
    }
    if (await this.records.isCancelRequested(buildId)) {
      await this.records.transition(buildId, BuildState.Cancelled, { error: 'cancelled' });
      return done('cancelled');
    }
    await this.records.transition(buildId, BuildState.Running);
    const sink = new BuildEventSink(this.records, buildId);
    try {
      const outcome = await this.engine.build(job.data, { signal, reporter: sink });
      await sink.flush();
      await this.records.appendEvent(buildId, { type: 'result', imageDigest: outcome.imageDigest });
      await this.records.transition(buildId, BuildState.Succeeded, { imageDigest: outcome.imageDigest });
      return done('succeeded', outcome.imageDigest);
    } catch (err) {
      await sink.flush().catch(() => undefined);
      const message = err instanceof Error ? err.message : String(err);
      if (signal.aborted && signal.reason === AbortReason.Cancelled) {
        await this.records.appendEvent(buildId, {
          type: 'log',
          step: null,
          stream: 'system',
          text: 'build cancelled\n',
        });
        await this.records.transition(buildId, BuildState.Cancelled, { error: 'cancelled' });
        return done('cancelled');
      }
      if (isUserBuildError(err)) {
        await this.records.appendEvent(buildId, { type: 'error', message });
        await this.records.transition(buildId, BuildState.Failed, { error: message });
        throw new UnrecoverableError(message);
      }
      const attempts = job.opts.attempts ?? 1;
      if (job.attemptsMade + 1 < attempts) {
        this.logger.warn(`build ${buildId} attempt ${job.attemptsMade + 1} failed, will retry: ${message}`);
        await this.records.appendEvent(buildId, {
          type: 'log',
          step: null,
          stream: 'system',
          text: `attempt ${job.attemptsMade + 1} of ${attempts} failed (${message}); retrying\n`,
        });
        await this.records.transition(buildId, BuildState.Queued);
      } else {
        await this.records.appendEvent(buildId, { type: 'error', message });
        await this.records.transition(buildId, BuildState.Failed, { error: message });
      }
      throw err;
    }
  }
}
