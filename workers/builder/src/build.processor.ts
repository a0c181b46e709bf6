import { hostname } from 'node:os';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Job, UnrecoverableError } from 'bullmq';
import { BuildEngine, BuildError, isUserBuildError, truncateErrorMessage } from '@stratum/build';
import { BuildJobData, BuildJobResult, BuildState, Digest, JobName } from '@stratum/contracts';
import { localReference } from '@stratum/images';
import { BuildRecordStore, BuildSecretStore } from '@stratum/jobs';
import { parseReference } from '@stratum/oci';
import { pushIdForBuild, PushSubmitter } from '@stratum/registry';
import { BuildEventSink } from './build-event-sink';
import { AbortReason, JobHandler, WORKER_ID } from './job-handler';

/**
 * Deliveries of a build after which a stall (its worker died or hung: no lock renewal) fails
 * it for good. One lost worker is a host fault and the build goes on elsewhere (the chaos
 * suite kills a worker mid-RUN); a build that loses a second worker is taken to be what kills
 * them (a heap or time budget blown by its input) and is not handed to a third.
 */
export const MAX_LOST_WORKERS = 2;

/**
 * Thin processor for `build` jobs: moves the record through its states and hands the work to
 * the engine. A user's mistake (bad Dockerfile, failing RUN) fails without retry; a fault of
 * the host or a shutdown fails the attempt so BullMQ retries it, possibly on another worker.
 */
@Injectable()
export class BuildProcessor implements JobHandler<typeof JobName.Build> {
  readonly name = JobName.Build;
  private readonly logger = new Logger('BuildProcessor');
  /**
   * Builds this process is running. BullMQ can hand a job to the same worker again while the
   * first delivery still runs (its lock expired, e.g. during a Redis outage); the second waits
   * for the first, so two runs never share (and delete) the build's scratch dir at once.
   */
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(
    private readonly records: BuildRecordStore,
    private readonly engine: BuildEngine,
    private readonly pushes: PushSubmitter,
    /** Build secrets (absent in tests that bring none). */
    @Optional() private readonly secrets?: BuildSecretStore,
    /** This worker's WORKER_ID (tests without one get the host name). */
    @Optional() @Inject(WORKER_ID) private readonly workerId: string = hostname(),
  ) {}

  /**
   * The build's secrets. A bundle that is gone (expired, or deleted when an earlier delivery of
   * this build ended) fails the build naming it: a step could not get what it needs.
   */
  private async loadSecrets(data: BuildJobData): Promise<Map<string, Buffer> | undefined> {
    if (data.secretsId === undefined) {
      return undefined;
    }
    const found = (await this.secrets?.get(data.secretsId)) ?? null;
    if (found === null) {
      throw new BuildError(
        `the build's secrets (${data.secretsId}) are gone (expired, or a server without the same AUTH_SECRET); submit the build again with them`,
      );
    }
    return found;
  }

  /**
   * Records and enqueues the push of the built image to other registries (`push: true`), as the
   * push API does. The push id is the build's: a retried build job submits the same push, which
   * records and enqueues nothing new (the record is created only if absent, the job id dedupes).
   */
  private async startPush(
    buildId: string,
    imageDigest: Digest,
    sourceTag: string,
    targets: string[],
  ): Promise<void> {
    const push = await this.pushes.submit({
      pushId: pushIdForBuild(buildId),
      manifestDigest: imageDigest,
      sourceRepository: localReference(sourceTag).repository,
      targets,
      source: sourceTag,
    });
    await this.records.update(buildId, (r) => {
      r.pushId = push.id;
    });
    await this.records.appendEvent(buildId, {
      type: 'log',
      step: null,
      stream: 'system',
      text: `pushing to ${targets.join(', ')} (push ${push.id})\n`,
    });
  }

  /** Secrets live as long as their build: gone once it ended for good (an attempt to come keeps them). */
  private async dropSecrets(data: BuildJobData): Promise<void> {
    if (data.secretsId !== undefined) {
      await this.secrets?.delete(data.secretsId);
    }
  }

  async handle(
    job: Job<BuildJobData, BuildJobResult, typeof JobName.Build>,
    signal: AbortSignal,
  ): Promise<BuildJobResult> {
    const { buildId } = job.data;
    const earlier = this.inFlight.get(buildId);
    if (earlier !== undefined) {
      this.logger.warn(`build ${buildId} delivered again while it runs here: waiting for the first run`);
      await earlier.catch(() => undefined);
    }
    const run = this.run(job, signal);
    this.inFlight.set(buildId, run);
    try {
      return await run;
    } finally {
      if (this.inFlight.get(buildId) === run) {
        this.inFlight.delete(buildId);
      }
    }
  }

  private async run(
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
    // Both reads go out together (one round trip).
    const [existing, cancelRequested] = await Promise.all([
      this.records.get(buildId),
      this.records.isCancelRequested(buildId),
    ]);
    if (existing === null) {
      throw new UnrecoverableError(`build ${buildId} has no record (expired?)`);
    }
    if (existing.state === BuildState.Succeeded) {
      return done('succeeded', existing.imageDigest); // a retried job whose first attempt finished
    }
    if (existing.state === BuildState.Failed || existing.state === BuildState.Cancelled) {
      return done(existing.state); // finished for good by an earlier delivery: nothing to redo
    }
    if (cancelRequested) {
      await this.records.transition(buildId, BuildState.Cancelled, { error: 'cancelled' });
      return done('cancelled');
    }
    // BullMQ counts the times a job's worker stopped renewing its lock (stalledCounter).
    const lost = job.stalledCounter ?? 0;
    if (lost >= MAX_LOST_WORKERS) {
      const message = `worker lost ${lost} times running this build (it may exhaust a worker's memory or time); not retried`;
      this.logger.warn(`build ${buildId}: ${message}`);
      await this.records.transition(buildId, BuildState.Failed, { error: message }, [
        { type: 'error', message },
      ]);
      throw new UnrecoverableError(message);
    }
    // A record still `running` when a delivery starts: the attempt before never ended, its
    // worker stopped renewing the job's lock (killed, hung, cut off) and BullMQ handed it on.
    const takeover =
      existing.state === BuildState.Running
        ? `worker ${existing.worker ?? '(unknown)'} lost, attempt ${existing.attempts + 1} on worker ${this.workerId}`
        : null;
    if (takeover !== null) {
      this.logger.warn(`build ${buildId}: ${takeover}`);
    }
    await this.records.transition(
      buildId,
      BuildState.Running,
      { worker: this.workerId },
      takeover !== null ? [{ type: 'log', step: null, stream: 'system', text: `${takeover}\n` }] : [],
    );
    const sink = new BuildEventSink(this.records, buildId, this.workerId);
    try {
      const { local, remote } = splitTags(job.data.tags);
      // An image only pushed elsewhere still lives in our registry, under the build's id.
      const tags = local.length > 0 ? local : [`builds/${buildId}:latest`];
      const secrets = await this.loadSecrets(job.data);
      const outcome = await this.engine.build(
        { ...job.data, tags },
        { signal, reporter: sink, ...(secrets !== undefined ? { secrets } : {}) },
      );
      await this.dropSecrets(job.data);
      await sink.flush();
      if (remote.length > 0 && job.data.push === true) {
        await this.startPush(buildId, outcome.imageDigest, tags[0], remote);
      }
      // The result and the final state in one transaction (one round trip less at the end).
      await this.records.transition(buildId, BuildState.Succeeded, { imageDigest: outcome.imageDigest }, [
        { type: 'result', imageDigest: outcome.imageDigest },
      ]);
      return done('succeeded', outcome.imageDigest);
    } catch (err) {
      await sink.flush().catch(() => undefined);
      const message = truncateErrorMessage(err instanceof Error ? err.message : String(err));
      if (signal.aborted && signal.reason === AbortReason.Cancelled) {
        await this.records.appendEvent(buildId, {
          type: 'log',
          step: null,
          stream: 'system',
          text: 'build cancelled\n',
        });
        await this.records.transition(buildId, BuildState.Cancelled, { error: 'cancelled' });
        await this.dropSecrets(job.data);
        return done('cancelled');
      }
      if (isUserBuildError(err)) {
        await this.dropSecrets(job.data);
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
        await this.dropSecrets(job.data);
        await this.records.appendEvent(buildId, { type: 'error', message });
        await this.records.transition(buildId, BuildState.Failed, { error: message });
      }
      // BullMQ keeps the thrown message as the job's failedReason: the shortened one.
      throw err instanceof Error && err.message === message ? err : new Error(message);
    }
  }
}

/** Tags in our registry (`repo:tag`) and in others (`host/repo:tag`). */
export function splitTags(tags: readonly string[]): { local: string[]; remote: string[] } {
  const local: string[] = [];
  const remote: string[] = [];
  for (const t of tags) {
    (parseReference(t).registry === null ? local : remote).push(t);
  }
  return { local, remote };
}
