import { Inject, Injectable, Logger } from '@nestjs/common';
import { Job } from 'bullmq';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  CONTAINER_CHANGES_LIMIT,
  ContainerRecord,
  ContainerState,
  JobName,
  RunContainerJobData,
  RunContainerJobResult,
} from '@stratum/contracts';
import { ContainerFilesystems, ContainerFs, ImageService } from '@stratum/images';
import { ContainerRecordStore, KeepRecord } from '@stratum/jobs';
import { RuncRuntime, RuntimeError } from '@stratum/runtime';
import { JobHandler } from '../job-handler';
import { LogTail } from './log-tail';

/** Each of stdout and stderr keeps its last this many bytes on the record. */
export const LOG_LIMIT_BYTES = 256 * 1024;
const LOG_FLUSH_MS = 2000;
/**
 * Mount points runc makes in the container's root when the image lacks them (the network files
 * are bound in every mode): left out of its
 * `docker diff`, as Docker keeps them in the "init" layer below the container's.
 */
const RUNTIME_MOUNT_POINTS = ['/proc', '/sys', '/dev', '/etc/hosts', '/etc/resolv.conf'];

/**
 * `run-container` jobs: mounts the image's layers with a fresh upper dir, runs the command
 * with runc, records output and exit code, then unmounts and keeps the upper dir, whose
 * changes a commit turns into a layer. A job runs once (the command may not be idempotent).
 */
@Injectable()
export class RunContainerProcessor implements JobHandler<typeof JobName.RunContainer> {
  readonly name = JobName.RunContainer;
  private readonly logger = new Logger('RunContainerProcessor');
  /** Containers running in this process (a record saying `running` for another is stale). */
  readonly active = new Set<string>();

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly records: ContainerRecordStore,
    private readonly images: ImageService,
    private readonly filesystems: ContainerFilesystems,
    /** The host's one runtime, shared with builds (container ids here are `ctr-<id>`). */
    private readonly runtime: RuncRuntime,
  ) {}

  async handle(
    job: Job<RunContainerJobData, RunContainerJobResult, typeof JobName.RunContainer>,
    signal: AbortSignal,
  ): Promise<RunContainerJobResult> {
    const id = job.data.containerId;
    const workerId = this.config.worker.id;
    let mine = false;
    const record = await this.records.update(id, (r) => {
      if (r.state !== ContainerState.Created) {
        throw new KeepRecord();
      }
      r.state = ContainerState.Running;
      r.startedAt = new Date().toISOString();
      r.workerId = workerId;
      mine = true;
    });
    if (record === null || !mine) {
      // Removed before it ran, or a redelivery of a run this worker lost in a crash.
      if (record?.state === ContainerState.Running && record.workerId === workerId && !this.active.has(id)) {
        await this.finish(id, { exitCode: null, signal: null, error: 'the worker restarted while it ran' });
      }
      return { containerId: id, exitCode: record?.exitCode ?? null };
    }
    this.active.add(id);
    const stdout = new LogTail(LOG_LIMIT_BYTES);
    const stderr = new LogTail(LOG_LIMIT_BYTES);
    let outcome: { exitCode: number | null; signal: string | null; error: string | null };
    let fs: ContainerFs | null = null;
    let changes: ContainerRecord['changes'] = null;
    const flush = setInterval(() => {
      this.records
        .update(id, (r) => {
          r.logs = {
            stdout: stdout.text(),
            stderr: stderr.text(),
            truncated: stdout.truncated || stderr.truncated,
          };
        })
        .catch(() => undefined);
    }, LOG_FLUSH_MS);
    try {
      const image = await this.images.resolve(record.imageRef);
      fs = await this.filesystems.create(id, image.layers);
      const c = record.config;
      const run = await this.runtime.run(
        `ctr-${id}`,
        {
          rootfs: fs.merged,
          args: record.command,
          env: c.Env,
          cwd: c.WorkingDir === '' ? '/' : c.WorkingDir,
          ...(c.User !== '' ? { user: c.User } : {}),
          network: record.network,
          // the same sandbox limits as a build's RUN step
          memoryBytes: this.config.stepMemoryBytes,
          pidsLimit: this.config.stepPidsLimit,
        },
        {
          onStdout: (chunk) => stdout.write(chunk),
          onStderr: (chunk) => stderr.write(chunk),
          signal,
          timeoutMs: this.config.stepTimeoutSeconds * 1000,
        },
      );
      outcome = {
        exitCode: run.exitCode,
        signal: run.signal,
        error: run.timedOut
          ? `killed after the time limit of ${this.config.stepTimeoutSeconds}s`
          : run.cancelled
            ? 'stopped: the worker shut down'
            : null,
      };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // Docker answers 127 when the command cannot be found/started.
      const startFailed = err instanceof RuntimeError && err.reason === 'START_FAILED';
      outcome = { exitCode: startFailed ? 127 : null, signal: null, error: message };
      this.logger.warn(`container ${id}: ${message}`);
    } finally {
      clearInterval(flush);
      if (fs !== null) {
        // Read while the layers are still leased; the container never runs again, so they stay true.
        changes = await this.filesystems
          .changes(fs, { limit: CONTAINER_CHANGES_LIMIT, ignoreAdded: RUNTIME_MOUNT_POINTS })
          .then((c) => ({ items: c.changes, truncated: c.truncated }))
          .catch((err: unknown) => {
            this.logger.warn(`container ${id}: cannot list its changes: ${String(err)}`);
            return null;
          });
        await this.filesystems.unmountPruned(fs).catch((err: unknown) => {
          this.logger.error(`container ${id}: unmount failed: ${String(err)}`);
        });
      }
      this.active.delete(id);
    }
    await this.finish(
      id,
      outcome,
      {
        stdout: stdout.text(),
        stderr: stderr.text(),
        truncated: stdout.truncated || stderr.truncated,
      },
      changes,
    );
    return { containerId: id, exitCode: outcome.exitCode };
  }

  private async finish(
    id: string,
    outcome: { exitCode: number | null; signal: string | null; error: string | null },
    logs?: { stdout: string; stderr: string; truncated: boolean },
    changes: ContainerRecord['changes'] = null,
  ): Promise<void> {
    await this.records.update(id, (r) => {
      r.state = ContainerState.Exited;
      r.exitCode = outcome.exitCode;
      r.signal = outcome.signal;
      r.error = outcome.error;
      r.finishedAt = new Date().toISOString();
      if (logs !== undefined) {
        r.logs = logs;
      }
      r.changes = changes;
    });
  }
}
