import { hostname } from 'node:os';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Job, UnrecoverableError } from 'bullmq';
import {
  BuildEngine,
  BuildError,
  BuildOutcome,
  isUserBuildError,
  truncateErrorMessage,
} from '@stratum/engine';
import {
  BuildJobData,
  BuildJobResult,
  BuildPlatformJobData,
  BuildPlatformJobResult,
  BuildState,
  Digest,
  JobName,
} from '@stratum/contracts';
import { localReference } from '@stratum/images';
import { BuildRecordStore, BuildSecretBundle, BuildSecretStore } from '@stratum/jobs';
import { parsePlatform, parseReference } from '@stratum/oci';
import { pushIdForBuild, PushSubmitter } from '@stratum/registry';
import { BuildEventSink } from './build-event-sink';
import { OldAttemptCheck } from './old-attempt-check';
import { AbortReason, JobHandler, WORKER_ID } from './job-handler';
import { PlatformReporter, WorkerPlatforms } from './worker-platforms';

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
    /** What this worker builds for (absent in tests: linux/amd64). */
    @Optional() private readonly platforms?: WorkerPlatforms,
    /** Clears the old attempt's containers on a takeover (absent in tests without a host). */
    @Optional() private readonly oldAttempts?: OldAttemptCheck,
  ) {}

  /**
   * The build's secrets and ssh keys. A bundle that is gone (expired, or deleted when an earlier
   * delivery of this build ended) fails the build naming it: a step could not get what it needs.
   */
  private async loadSecrets(data: Pick<BuildJobData, 'secretsId'>): Promise<BuildSecretBundle | undefined> {
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
  private async dropSecrets(data: Pick<BuildJobData, 'secretsId'>): Promise<void> {
    if (data.secretsId !== undefined) {
      await this.secrets?.delete(data.secretsId);
    }
  }

  async handle(
    job: Job<BuildJobData, BuildJobResult, typeof JobName.Build>,
    signal: AbortSignal,
  ): Promise<BuildJobResult> {
    return this.once(job.data.buildId, () => this.run(job, signal));
  }

  /** Runs `task` for `key` (a build, or one platform of it) after an earlier delivery here ended. */
  private async once<T>(key: string, task: () => Promise<T>): Promise<T> {
    const earlier = this.inFlight.get(key);
    if (earlier !== undefined) {
      this.logger.warn(`build ${key} delivered again while it runs here: waiting for the first run`);
      await earlier.catch(() => undefined);
    }
    const run = task();
    this.inFlight.set(key, run);
    try {
      return await run;
    } finally {
      if (this.inFlight.get(key) === run) {
        this.inFlight.delete(key);
      }
    }
  }

  /**
   * One platform's image of a multi-platform build (a `build-platform` child job): built for
   * that platform, linked into the tags' repositories untagged; the parent job tags the index
   * once every platform is done. A failure ends the whole build (the record says which platform
   * failed) and cancels the other platforms.
   */
  async handlePlatform(
    job: Job<BuildPlatformJobData, BuildPlatformJobResult, typeof JobName.BuildPlatform>,
    signal: AbortSignal,
  ): Promise<BuildPlatformJobResult> {
    const { buildId, platform } = job.data;
    return this.once(`${buildId}.${platform}`, async () => {
      const existing = await this.records.get(buildId);
      if (existing === null) {
        throw new UnrecoverableError(`build ${buildId} has no record (expired?)`);
      }
      if (existing.state !== BuildState.Queued && existing.state !== BuildState.Running) {
        throw new UnrecoverableError(`build ${buildId} has ${existing.state}; ${platform} not built`);
      }
      if (await this.records.isCancelRequested(buildId)) {
        await this.records.transition(buildId, BuildState.Cancelled, { error: 'cancelled' });
        throw new UnrecoverableError(`build ${buildId} cancelled`);
      }
      await this.records.transition(buildId, BuildState.Running, { worker: this.workerId });
      const sink = new BuildEventSink(this.records, buildId, this.workerId);
      try {
        const { local } = splitTags(job.data.tags);
        const tags = local.length > 0 ? local : [`builds/${buildId}:latest`];
        const secrets = await this.loadSecrets(job.data);
        const outcome = await this.engine.build(
          // Its own scratch dir: two platforms of one build may run on this host at once.
          { ...job.data, buildId: `${buildId}.${platform.replace(/\//g, '-')}`, tags },
          {
            signal,
            reporter: new PlatformReporter(sink, platform, job.data.position),
            platform,
            untagged: true,
            ...(secrets !== undefined ? { secrets: secrets.secrets, ssh: secrets.ssh } : {}),
          },
        );
        await sink.flush();
        return {
          buildId,
          platform,
          imageDigest: outcome.imageDigest,
          manifestSize: outcome.manifestSize,
          manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
        };
      } catch (err) {
        await sink.flush().catch(() => undefined);
        const message = `${platform}: ${truncateErrorMessage(err instanceof Error ? err.message : String(err))}`;
        if (signal.aborted && signal.reason === AbortReason.Cancelled) {
          await this.records.transition(buildId, BuildState.Cancelled, { error: 'cancelled' });
          await this.dropSecrets(job.data);
          throw new UnrecoverableError(`build ${buildId} cancelled`);
        }
        const attempts = job.opts.attempts ?? 1;
        if (!isUserBuildError(err) && job.attemptsMade + 1 < attempts) {
          this.logger.warn(
            `build ${buildId} ${platform} attempt ${job.attemptsMade + 1} failed, will retry: ${message}`,
          );
          await this.records.appendEvent(buildId, {
            type: 'log',
            step: null,
            stream: 'system',
            text: `[${platform}] attempt ${job.attemptsMade + 1} of ${attempts} failed (${message}); retrying\n`,
          });
          throw err instanceof Error ? err : new Error(message);
        }
        // For good: the build fails naming the platform; the other platforms are stopped.
        await this.dropSecrets(job.data);
        await this.records.appendEvent(buildId, { type: 'error', message });
        await this.records.transition(buildId, BuildState.Failed, { error: message });
        await this.records.requestCancel(buildId);
        throw new UnrecoverableError(message);
      }
    });
  }

  /**
   * The parent of a multi-platform build, run once every platform's image is built: tags the
   * one image (one platform, as buildx does) or an OCI index of them, each entry with its platform.
   */
  private async assemble(
    job: Job<BuildJobData, BuildJobResult, typeof JobName.Build>,
    tags: string[],
  ): Promise<{ imageDigest: Digest }> {
    const values = Object.values(await job.getChildrenValues<BuildPlatformJobResult>());
    const wanted = job.data.platforms ?? [];
    const results = wanted.map((p) => {
      const r = values.find((v) => v.platform === p);
      if (r === undefined) {
        throw new Error(`build ${job.data.buildId}: no image for ${p} among its finished platforms`);
      }
      return r;
    });
    if (results.length === 1) {
      for (const t of tags) {
        await this.engine.images.tag(`${localReference(tags[0]).repository}@${results[0].imageDigest}`, t);
      }
      return { imageDigest: results[0].imageDigest };
    }
    const index = await this.engine.images.writeIndex(
      results.map((r) => ({
        digest: r.imageDigest,
        size: r.manifestSize,
        mediaType: r.manifestMediaType,
        platform: parsePlatform(r.platform),
      })),
      tags,
    );
    return { imageDigest: index.digest as Digest };
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
    // (A multi-platform parent finds it running: its platforms' jobs ran it.)
    const parent = job.data.platforms !== undefined && job.data.platforms.length > 0;
    const takeover =
      existing.state === BuildState.Running && !parent
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
      if (takeover !== null && typeof existing.worker === 'string' && this.oldAttempts !== undefined) {
        // Before any step runs again: the old attempt's containers must be gone (issue 20).
        const cleared = await this.oldAttempts.clear(buildId, existing.worker);
        this.logger.log(`build ${buildId}: ${cleared.message}`);
        sink.log(null, 'system', `${cleared.message}\n`);
        if (cleared.waitedMs > 0) {
          // The old attempt went on meanwhile: it may have finished the build.
          const now = await this.records.get(buildId);
          if (now?.state === BuildState.Succeeded) {
            await sink.flush();
            return done('succeeded', now.imageDigest);
          }
          if (now?.state === BuildState.Failed || now?.state === BuildState.Cancelled) {
            await sink.flush();
            return done(now.state);
          }
          if (now?.state === BuildState.Queued) {
            await this.records.transition(buildId, BuildState.Running, { worker: this.workerId });
          }
        }
      }
      const { local, remote } = splitTags(job.data.tags);
      // An image only pushed elsewhere still lives in our registry, under the build's id.
      const tags = local.length > 0 ? local : [`builds/${buildId}:latest`];
      const secrets = await this.loadSecrets(job.data);
      let reported = false;
      const report = async (outcome: Pick<BuildOutcome, 'imageDigest'>): Promise<void> => {
        await this.dropSecrets(job.data);
        await sink.flush();
        if (remote.length > 0 && job.data.push === true) {
          await this.startPush(buildId, outcome.imageDigest, tags[0], remote);
        }
        // The result and the final state in one transaction (one round trip less at the end).
        await this.records.transition(buildId, BuildState.Succeeded, { imageDigest: outcome.imageDigest }, [
          { type: 'result', imageDigest: outcome.imageDigest },
        ]);
        reported = true;
      };
      const outcome =
        job.data.platforms !== undefined && job.data.platforms.length > 0
          ? await this.assemble(job, tags)
          : await this.engine.build(
              { ...job.data, tags },
              {
                signal,
                reporter: sink,
                ...(this.platforms !== undefined ? { platform: this.platforms.native } : {}),
                ...(secrets !== undefined ? { secrets: secrets.secrets, ssh: secrets.ssh } : {}),
                // the result goes out as soon as the image is written; the build's cleanup follows
                onImage: report,
              },
            );
      if (job.data.platforms !== undefined && job.data.platforms.length > 1) {
        sink.log(
          null,
          'system',
          `image index ${outcome.imageDigest} (${job.data.platforms.join(', ')}) as ${tags.join(', ')}\n`,
        );
      }
      if (!reported) {
        await report(outcome);
      }
      return done('succeeded', outcome.imageDigest);
    } catch (err) {
      await sink.flush().catch(() => undefined);
      const message = truncateErrorMessage(err instanceof Error ? err.message : String(err));
      if (signal.aborted && signal.reason === AbortReason.LockLost) {
        // Another worker runs the build now: its record, secrets and result are that attempt's.
        this.logger.warn(`build ${buildId}: lock lost, this attempt stopped (${message})`);
        throw new Error(`lock lost: the build was taken over (${message})`, { cause: err });
      }
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

/** The `build-platform` job handler: one platform of a multi-platform build ({@link BuildProcessor.handlePlatform}). */
@Injectable()
export class BuildPlatformProcessor implements JobHandler<typeof JobName.BuildPlatform> {
  readonly name = JobName.BuildPlatform;

  constructor(private readonly builds: BuildProcessor) {}

  handle(
    job: Job<BuildPlatformJobData, BuildPlatformJobResult, typeof JobName.BuildPlatform>,
    signal: AbortSignal,
  ): Promise<BuildPlatformJobResult> {
    return this.builds.handlePlatform(job, signal);
  }
}
