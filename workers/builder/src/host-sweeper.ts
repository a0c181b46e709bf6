import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { listMountsUnder, unmountOverlay } from '@stratum/layers';
import { RuncRuntime } from '@stratum/runtime';
import { BLOB_STORE, BlobStore } from '@stratum/storage';

/** Where this worker keeps things on its host; everything under `scratchDir` is its own. */
export interface WorkerPaths {
  readonly scratch: string;
  readonly runcRoot: string;
  readonly bundles: string;
  readonly jobs: string;
  readonly layerCache: string;
  /** `RUN --mount=type=cache` dirs, one per hashed id; nothing else lives there. */
  readonly runCache: string;
}

export function workerPaths(config: StratumConfig): WorkerPaths {
  const scratch = config.worker.scratchDir;
  return {
    scratch,
    runcRoot: join(scratch, 'runc'),
    bundles: join(scratch, 'bundles'),
    jobs: join(scratch, 'jobs'),
    layerCache: join(config.dataDir, 'layer-cache'),
    runCache: join(config.dataDir, 'run-cache'),
  };
}

export interface SweepReport {
  readonly containers: number;
  readonly mounts: number;
  readonly jobDirs: number;
  readonly tempUploads: number;
}

/** A temp upload untouched this long was left by a writer that died. */
const STALE_TEMP_UPLOAD_MS = 10 * 60 * 1000;

/**
 * Start-up sweep: what a crashed predecessor with the same WORKER_ID left on this host —
 * runc containers in our runc root, overlay mounts under our scratch dir, per-job temp dirs.
 * Order matters: kill containers first (they hold the mounts busy), then unmount, then delete.
 */
@Injectable()
export class HostSweeper {
  private readonly logger = new Logger('HostSweeper');
  readonly paths: WorkerPaths;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly runtime: RuncRuntime,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {
    this.paths = workerPaths(config);
  }

  async sweep(): Promise<SweepReport> {
    for (const dir of [this.paths.scratch, this.paths.jobs, this.paths.layerCache]) {
      await mkdir(dir, { recursive: true });
    }
    const swept = await this.runtime.sweep();
    const containers = swept.containers.length;
    if (swept.networkProcesses > 0) {
      this.logger.warn(`killed ${swept.networkProcesses} sandbox network helper(s) a previous worker left`);
    }
    // Every mount under our scratch dir is ours: overlays, and a step's tmpfs mounts (secrets,
    // type=tmpfs) and rw bind copies — left mounted, they made the job dirs' removal fail
    // (EBUSY) and the worker could not start. Deepest first, nested before their parents.
    const mounts = await listMountsUnder(this.paths.scratch);
    for (const m of [...mounts].sort((a, b) => b.target.length - a.target.length)) {
      await unmountOverlay(m.target, { lazy: true });
    }
    // Containers used a cache of their own before they shared the host's layer cache.
    await rm(join(this.config.dataDir, 'container-layer-cache'), { recursive: true, force: true });
    const jobDirs = await readdir(this.paths.jobs);
    for (const d of jobDirs) {
      await rm(join(this.paths.jobs, d), { recursive: true, force: true });
    }
    // The store is shared: only temp uploads idle long enough to be dead are removed.
    const tempUploads = await this.blobs.sweepTemp(STALE_TEMP_UPLOAD_MS);
    const report = { containers, mounts: mounts.length, jobDirs: jobDirs.length, tempUploads };
    if (report.containers + report.mounts + report.jobDirs + report.tempUploads > 0) {
      this.logger.warn(
        `swept what a previous worker left: ${report.containers} container(s), ${report.mounts} mount(s), ${report.jobDirs} job dir(s), ${report.tempUploads} stale temp upload(s)`,
      );
    }
    return report;
  }
}
