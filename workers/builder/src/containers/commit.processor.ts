import { stat } from 'node:fs/promises';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { Job, UnrecoverableError } from 'bullmq';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  CommitJobData,
  CommitJobResult,
  CommitState,
  ContainerCommit,
  ContainerState,
  Digest,
  JobName,
  StratumError,
} from '@stratum/contracts';
import {
  commitConfig,
  ContainerFilesystems,
  EMPTY_TAR_DIFF_ID,
  ImageService,
  parseCommitChanges,
} from '@stratum/images';
import { ContainerRecordStore } from '@stratum/jobs';
import { JobHandler } from '../job-handler';

/** Mistakes of the request (bad change, no such container): failing again will not help. */
function isUserError(err: unknown): boolean {
  return (
    err instanceof StratumError &&
    (err.code === 'BAD_REQUEST' || err.code === 'CONTAINER_UNKNOWN' || err.code === 'CONTAINER_STATE')
  );
}

/**
 * `commit` jobs, like `docker commit`: snapshots the container's upper dir into a layer (its
 * overlay whiteouts become OCI whiteouts) and writes the image: the parent's layers plus that
 * one, the container's config with the changes applied, a history entry with the container's
 * command, the message and the author. The upper dir lives on the worker that ran the
 * container, so commits come on that worker's own queue (`commit.<workerId>`).
 */
@Injectable()
export class CommitProcessor implements JobHandler<typeof JobName.Commit> {
  readonly name = JobName.Commit;
  private readonly logger = new Logger('CommitProcessor');

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly records: ContainerRecordStore,
    private readonly images: ImageService,
    private readonly filesystems: ContainerFilesystems,
  ) {}

  async handle(job: Job<CommitJobData, CommitJobResult, typeof JobName.Commit>): Promise<CommitJobResult> {
    const d = job.data;
    const existing = await this.records.get(d.containerId);
    const done = existing?.commits.find((c) => c.id === d.commitId);
    if (done?.state === CommitState.Succeeded && done.imageDigest !== null) {
      return { commitId: d.commitId, imageDigest: done.imageDigest }; // a retry of a finished commit
    }
    await this.setCommit(d.containerId, d.commitId, { state: CommitState.Running, error: null });
    try {
      const imageDigest = await this.commit(d);
      await this.setCommit(d.containerId, d.commitId, {
        state: CommitState.Succeeded,
        imageDigest,
        finishedAt: new Date().toISOString(),
      });
      return { commitId: d.commitId, imageDigest };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (isUserError(err) || last) {
        await this.setCommit(d.containerId, d.commitId, {
          state: CommitState.Failed,
          error: message,
          finishedAt: new Date().toISOString(),
        }).catch(() => undefined);
        if (isUserError(err)) {
          throw new UnrecoverableError(message);
        }
      } else {
        this.logger.warn(
          `commit ${d.commitId} attempt ${job.attemptsMade + 1} failed, will retry: ${message}`,
        );
        await this.setCommit(d.containerId, d.commitId, { state: CommitState.Queued, error: message }).catch(
          () => undefined,
        );
      }
      throw err;
    }
  }

  private async commit(d: CommitJobData): Promise<Digest> {
    const record = await this.records.require(d.containerId);
    if (record.state !== ContainerState.Exited) {
      throw new StratumError('CONTAINER_STATE', `container ${record.id} is ${record.state}, not exited`);
    }
    if (record.workerId !== this.config.worker.id) {
      // Commits go to the queue of the worker holding the container; retrying here cannot help.
      throw new StratumError(
        'CONTAINER_STATE',
        `container ${record.id} lives on worker ${record.workerId ?? '(none)'}, not on ${this.config.worker.id}`,
      );
    }
    const changes = parseCommitChanges(d.changes);
    const image = await this.images.resolve(record.imageRef);
    const fs = this.filesystems.describe(record.id, image.layers);
    try {
      await stat(fs.upper);
    } catch {
      throw new StratumError('CONTAINER_UNKNOWN', `container ${record.id} has no filesystem on this worker`);
    }
    const layer = await this.filesystems.snapshot(fs);
    // Docker adds no layer for a container that changed nothing (image.NewChildImage: IsEmpty).
    const layerAdded = layer.diffId !== EMPTY_TAR_DIFF_ID;
    const config = commitConfig({
      parent: image.config,
      container: record.config,
      command: record.command,
      changes,
      message: d.message,
      author: d.author,
      layerAdded,
      diffId: layer.diffId,
      created: new Date().toISOString(),
    });
    const written = await this.images.write({
      config,
      layers: layerAdded ? [...image.layers, layer] : image.layers,
      tags: [`${d.repository}:${d.tag}`],
    });
    this.logger.log(
      `committed container ${record.id} as ${d.repository}:${d.tag} (${written.manifestDigest})`,
    );
    return written.manifestDigest as Digest;
  }

  private async setCommit(
    containerId: string,
    commitId: string,
    change: Partial<ContainerCommit>,
  ): Promise<void> {
    const updated = await this.records.update(containerId, (r) => {
      const c = r.commits.find((x) => x.id === commitId);
      if (c !== undefined) {
        Object.assign(c, change);
      }
    });
    if (updated === null) {
      throw new UnrecoverableError(`container ${containerId} no longer exists`);
    }
  }
}
