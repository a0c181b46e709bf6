import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, statfsSync, writeFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { unmountAllUnder } from '@stratum/layers';
import { RuncRuntime } from '@stratum/runtime';
import { BLOB_STORE, BlobStore } from '@stratum/storage';

/** Where this worker keeps things on its host; everything under `scratchDir` is its own. */
export interface WorkerPaths {
  readonly scratch: string;
  /**
   * The tmpfs dir holding `runcRoot` and `bundles` (see {@link runtimeDir}); null: they are in
   * `scratch`, on the data dir's filesystem.
   */
  readonly run: string | null;
  readonly runcRoot: string;
  readonly bundles: string;
  readonly jobs: string;
  readonly layerCache: string;
  /** `RUN --mount=type=cache` dirs, one per hashed id; nothing else lives there. */
  readonly runCache: string;
}

export function workerPaths(config: StratumConfig): WorkerPaths {
  const scratch = config.worker.scratchDir;
  const run = runtimeDir(config);
  return {
    scratch,
    run,
    runcRoot: join(run ?? scratch, 'runc'),
    bundles: join(run ?? scratch, 'bundles'),
    jobs: join(scratch, 'jobs'),
    layerCache: join(config.dataDir, 'layer-cache'),
    runCache: join(config.dataDir, 'run-cache'),
  };
}

const TMPFS_MAGIC = 0x01021994;
/** Tried in order: the host's runtime dir (a tmpfs on systemd hosts), then /dev/shm. */
const RUNTIME_BASES = ['/run', '/dev/shm'];
const chosenRuntimeDirs = new Map<string, string | null>();

/**
 * The OCI runtime's state (`runc`) and the containers' bundles (`bundles`: config.json, hosts,
 * resolv.conf, the sandbox networks' dirs) live on a tmpfs, as Docker's exec root and runc's
 * own root do (/run/docker, /run/runc): every RUN step creates and deletes a dozen small files
 * there, and on an ext4 data dir without a journal each file creation scans the inodes
 * deleted in the last seconds (a build host deletes many). Measured on this 2-core host, 20
 * cold `steps` builds a round, three rounds interleaved: 506-519 ms and 577-596 ms of CPU per
 * build on a tmpfs, 550-571 ms and 633-656 ms on the data dir.
 * `<base>/stratum/<WORKER_ID>-<hash of the scratch dir>` on the first tmpfs of /run and
 * /dev/shm; `<base>/stratum` and it are made 0700 and must be this user's own directories
 * that no one else can write (/dev/shm is world-writable: a directory someone else made there
 * first is refused). Null (state in the scratch dir, as before) when there is no such tmpfs
 * or the directory is refused. Decided once per process.
 */
export function runtimeDir(config: StratumConfig): string | null {
  const scratch = config.worker.scratchDir;
  let chosen = chosenRuntimeDirs.get(scratch);
  if (chosen === undefined) {
    chosen = chooseRuntimeDir(config.worker.id, scratch);
    chosenRuntimeDirs.set(scratch, chosen);
  }
  return chosen;
}

/** {@link runtimeDir}'s choice among `bases` (exported for its test). */
export function chooseRuntimeDir(
  workerId: string,
  scratch: string,
  bases: readonly string[] = RUNTIME_BASES,
): string | null {
  const logger = new Logger('HostSweeper');
  for (const base of bases) {
    try {
      if (statfsSync(base).type !== TMPFS_MAGIC) {
        continue;
      }
    } catch {
      continue;
    }
    const top = join(base, 'stratum');
    const dir = join(top, `${workerId}-${createHash('sha256').update(scratch).digest('hex').slice(0, 12)}`);
    const problem = ownPrivateDir(top) ?? ownPrivateDir(dir);
    if (problem !== null) {
      logger.warn(`runtime state stays in ${scratch}: ${problem}`);
      return null;
    }
    // It names its scratch dir from the start: a worker that fails to boot after this (its
    // store probe, say) leaves a dir the next worker's sweep removes once that scratch is gone.
    writeFileSync(join(dir, 'scratch'), `${scratch}\n`, { mode: 0o600 });
    return dir;
  }
  return null;
}

/** Makes `dir` (0700) or checks the one there: null when it is ours alone, else why not. */
function ownPrivateDir(dir: string): string | null {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      return `cannot make ${dir}: ${(err as Error).message}`;
    }
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    return `${dir} is not a directory of uid ${uid} that only it can write (${st.isSymbolicLink() ? 'a symlink' : `uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}`})`;
  }
  return null;
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
    const legacy = this.paths.run !== null ? await this.prepareRuntimeDir(this.paths.run) : 0;
    const swept = await this.runtime.sweep();
    const containers = swept.containers.length + legacy;
    if (swept.networkProcesses > 0) {
      this.logger.warn(`killed ${swept.networkProcesses} sandbox network helper(s) a previous worker left`);
    }
    // Every mount under our scratch dir is ours: overlays, and a step's tmpfs mounts (secrets,
    // type=tmpfs) and rw bind copies — left mounted, they made the job dirs' removal fail
    // (EBUSY) and the worker could not start. Deepest first, nested before their parents.
    const mounts = await unmountAllUnder(this.paths.scratch);
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

  /**
   * With the runtime state on a tmpfs ({@link runtimeDir}): containers a worker of an older
   * version left in the scratch dir's `runc` and `bundles` are swept there, those dirs go, and
   * in their place symlinks name the tmpfs ones (where an operator looks for the runc root).
   * The dir names its scratch dir (file `scratch`); a sibling whose scratch dir is gone (its
   * data dir removed) and whose runc root holds no container is removed. Returns the number of
   * containers swept.
   */
  private async prepareRuntimeDir(run: string): Promise<number> {
    const { scratch, runcRoot, bundles } = this.paths;
    await writeFile(join(run, 'scratch'), `${scratch}\n`, { mode: 0o600 });
    const top = dirname(run);
    for (const name of await readdir(top)) {
      const other = join(top, name);
      const owner = (await readFile(join(other, 'scratch'), 'utf8').catch(() => null))?.trim();
      if (owner === undefined || owner === scratch || (await lstat(owner).catch(() => null)) !== null) {
        continue;
      }
      if ((await readdir(join(other, 'runc')).catch(() => [])).length === 0) {
        await rm(other, { recursive: true, force: true });
      }
    }
    const legacyRoot = join(scratch, 'runc');
    const legacyBundles = join(scratch, 'bundles');
    let containers = 0;
    if ((await lstat(legacyRoot).catch(() => null))?.isDirectory() === true) {
      const old = new RuncRuntime({
        runcPath: this.config.runtimePath,
        stateRoot: legacyRoot,
        bundleDir: legacyBundles,
      });
      containers = (await old.sweep()).containers.length;
    }
    for (const [link, target] of [
      [legacyRoot, runcRoot],
      [legacyBundles, bundles],
    ] as const) {
      await mkdir(target, { recursive: true, mode: 0o700 });
      if ((await readlink(link).catch(() => null)) === target) {
        continue;
      }
      // never delete through a mount (a step's sysfs in an old bundle)
      await unmountAllUnder(link);
      await rm(link, { recursive: true, force: true });
      await symlink(target, link);
    }
    return containers;
  }
}
