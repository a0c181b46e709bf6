import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { opaqueName } from '@stratum/confine';
import type { CacheSharing } from '@stratum/dockerfile';

const execFileP = promisify(execFile);

/** A cache mount directory held by one RUN step; {@link release} it when the step ends. */
export interface RunCacheLease {
  /** Host directory bind-mounted at the mount's target. */
  readonly dir: string;
  /** Resolves once the directory is free for others (its lock dropped). */
  release(): Promise<void>;
}

/**
 * An flock(2) on `file`, held by a `flock` child process (util-linux) that runs `cat`: the
 * lock is held once `cat` echoes a line back, and dropped when its stdin closes — by
 * {@link FileLock.release}, or by the kernel when this process dies, so a killed worker never
 * leaves a cache locked. Node has no flock of its own; a child process per lock costs ~5 ms
 * and keeps the lock shared between worker processes on one DATA_DIR.
 */
interface FileLock {
  /** Resolves once the `flock` process has exited, that is, the lock is dropped. */
  release(): Promise<void>;
}

async function flockFile(
  file: string,
  how: { exclusive: boolean; wait: boolean },
  signal: AbortSignal,
): Promise<FileLock | null> {
  signal.throwIfAborted();
  const child = spawn('flock', [how.exclusive ? '-x' : '-s', ...(how.wait ? [] : ['-n']), file, 'cat'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.on('error', () => undefined);
  const exited = new Promise<void>((resolveExit) => child.once('close', () => resolveExit()));
  const release = (): Promise<void> => {
    child.stdin.end();
    return exited;
  };
  return new Promise<FileLock | null>((resolveLock, reject) => {
    let settled = false;
    const settle = (fn: () => void): void => {
      if (!settled) {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        fn();
      }
    };
    const onAbort = (): void => {
      child.kill('SIGKILL');
      settle(() => reject(new Error('build aborted while waiting for a locked cache mount')));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.stdout.once('data', () => settle(() => resolveLock({ release })));
    child.once('error', (err) =>
      settle(() => reject(new Error(`cache mount lock: cannot run flock (util-linux): ${err.message}`))),
    );
    child.once('exit', (code) =>
      settle(() =>
        // flock -n exits 1 when the lock is taken elsewhere.
        !how.wait && code === 1
          ? resolveLock(null)
          : reject(new Error(`cache mount lock on ${file}: flock exited ${String(code)}: ${stderr.trim()}`)),
      ),
    );
    child.stdin.write('locked\n');
  });
}

/**
 * Directory name of cache `id` with seed identity `seed` (see the engine's `cacheMountKey`):
 * the id's hash alone without a seed; with one, the hash of both, NUL-separated. Ids are
 * host-wide names, as BuildKit's: any build on the host may use any id, seeded or not.
 */
export function runCacheName(id: string, seed: string | null): string {
  return seed === null ? opaqueName(id) : opaqueName(`${id}\0${seed}`);
}

/** Default budget of a host's cache mount directories (`RUN_CACHE_MAX_BYTES`). */
export const DEFAULT_RUN_CACHE_MAX_BYTES = 10 * 1024 * 1024 * 1024;

/** A seed (a `from` root) larger than the whole budget of the host's cache mounts: it is not copied. */
export class RunCacheSeedTooLargeError extends Error {
  constructor(
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super(
      `the seed is ${bytes} bytes, more than this host's budget for cache mounts (RUN_CACHE_MAX_BYTES=${maxBytes})`,
    );
    this.name = 'RunCacheSeedTooLargeError';
  }
}

/** Most instances of one `sharing=private` cache in use at once on a host. */
export const MAX_PRIVATE_CACHE_INSTANCES = 64;

/**
 * The host's `RUN --mount=type=cache` directories (BuildKit's cache mounts): one directory
 * per id under `root`, named by the id's hash (ids are keys, never paths), kept across
 * builds on this host and trimmed least recently used first ({@link trim}).
 *
 * Sharing, as BuildKit: `shared` — every step uses the one directory at once; `locked` — one
 * step at a time on this host, the others wait; `private` — a step that finds the directory
 * in use gets another instance (`<hash>-<n>`), created for it and kept for later private use.
 *
 * "In use" is an flock on `root/.locks/<name>`, so it holds between all the worker processes
 * that share one DATA_DIR (and so this root): `shared` steps hold it shared, `locked` steps
 * exclusively (waiting for every other user, as BuildKit's locked ref), `private` steps take
 * it exclusively without waiting or move on to the next instance, and {@link trim} removes a
 * directory only while it holds it exclusively. Lock files are never removed: a waiter must
 * never lock a name whose file was replaced.
 */
export class RunCacheStore {
  readonly root: string;

  /**
   * @param maxBytes the budget {@link trim} keeps the unused directories to by default, and the
   *   largest seed {@link copySeed} copies.
   */
  constructor(
    root: string,
    readonly maxBytes: number = DEFAULT_RUN_CACHE_MAX_BYTES,
  ) {
    this.root = resolve(root);
  }

  private lockFile(name: string): string {
    return join(this.root, '.locks', name);
  }

  /**
   * The directory for cache `id` seeded by `seed` ({@link runCacheName}). A directory made
   * now is prepared by `init` (owner, mode, seed content) in a temporary name first, then
   * renamed into place: a crash never leaves a half-seeded cache behind. Every directory is
   * made once per host, seeded or not: a step that finds another making it waits for it (an
   * flock on `.locks/<name>.seed`) instead of making it too — a second rename would replace
   * the first (rename replaces an empty directory) under a step already using it.
   */
  async acquire(
    id: string,
    seed: string | null,
    sharing: CacheSharing,
    init: (dir: string) => Promise<void>,
    signal: AbortSignal,
  ): Promise<RunCacheLease> {
    await mkdir(join(this.root, '.locks'), { recursive: true });
    const base = runCacheName(id, seed);
    let name = base;
    let held: FileLock | null = null;
    if (sharing === 'private') {
      for (let n = 0; held === null; n++) {
        if (n >= MAX_PRIVATE_CACHE_INSTANCES) {
          throw new Error(
            `cache mount "${id}": ${MAX_PRIVATE_CACHE_INSTANCES} private instances are in use on this host`,
          );
        }
        name = n === 0 ? base : `${base}-${n}`;
        held = await flockFile(this.lockFile(name), { exclusive: true, wait: false }, signal);
      }
    } else {
      held = await flockFile(this.lockFile(name), { exclusive: sharing === 'locked', wait: true }, signal);
    }
    const lock: FileLock = held as FileLock;
    const dir = join(this.root, name);
    try {
      await this.ensure(dir, init, `${this.lockFile(name)}.seed`, signal);
    } catch (err) {
      await lock.release();
      throw err;
    }
    let released: Promise<void> | null = null;
    return {
      dir,
      release: () => {
        released ??= (async () => {
          // The directory's time stamps order the LRU trim: this use is the latest.
          const now = new Date();
          await utimes(dir, now, now).catch(() => undefined);
          await lock.release();
        })();
        return released;
      },
    };
  }

  /**
   * Makes `dir` when it is missing, under `onceLock` even for an empty cache: two steps making
   * it at once would both rename a directory into place, and a rename replaces an empty
   * directory, so the first one's step would hold a deleted directory (its writes lost, and
   * runc's bind of it failing with ENOENT: seen with two workers on one host).
   */
  private async ensure(
    dir: string,
    init: (dir: string) => Promise<void>,
    onceLock: string,
    signal: AbortSignal,
  ): Promise<void> {
    const exists = async (): Promise<boolean> => (await stat(dir).catch(() => null))?.isDirectory() === true;
    if (await exists()) {
      return;
    }
    // Taken only while the directory is missing, after the directory's own lock: never a cycle.
    const once = (await flockFile(onceLock, { exclusive: true, wait: true }, signal)) as FileLock;
    try {
      if (!(await exists())) {
        await this.make(dir, init);
      }
    } finally {
      await once.release();
    }
  }

  private async make(dir: string, init: (dir: string) => Promise<void>): Promise<void> {
    const tmp = join(this.root, `.tmp-${randomBytes(8).toString('hex')}`);
    await mkdir(tmp);
    try {
      await init(tmp);
      await rename(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      // Another step of this host made it at the same moment: theirs is as good.
      if ((await stat(dir).catch(() => null))?.isDirectory() === true) {
        return;
      }
      throw err;
    }
  }

  /**
   * Copies the tree `root` (a seed: a `from` stage's root) into `dir`, a directory being made by
   * {@link acquire}'s `init`: owners, modes, links and times kept; a reflink where the
   * filesystem has them, else a plain copy, never a hard link into the seed (a step's writes to
   * the cache must not reach the stage). A seed larger than {@link maxBytes} would be trimmed
   * as soon as it is unused: it is refused ({@link RunCacheSeedTooLargeError}) before any copy.
   * Cost, once per seeded directory: ~0.1-0.3 s (du + cp) for a 100 MB stage on ext4 (no reflink).
   */
  async copySeed(root: string, dir: string): Promise<void> {
    const bytes = await duBytes(root);
    if (bytes > this.maxBytes) {
      throw new RunCacheSeedTooLargeError(bytes, this.maxBytes);
    }
    await execFileP('cp', ['-a', '--reflink=auto', `${root}/.`, dir]);
  }

  /**
   * Removes unused cache directories, least recently used first, until the rest take at most
   * `maxBytes` (sizes by `du`, hard links counted once per directory). Directories in use are
   * kept, whatever their size. Leftover temporaries of a crash are removed too.
   */
  async trim(maxBytes: number = this.maxBytes): Promise<{ removed: number; freedBytes: number }> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    const entries: { name: string; size: number; used: number }[] = [];
    for (const name of names) {
      const dir = join(this.root, name);
      if (name.startsWith('.tmp-')) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (name.startsWith('.')) {
        continue; // .locks
      }
      const st = await stat(dir).catch(() => null);
      if (st === null || !st.isDirectory()) {
        continue;
      }
      entries.push({ name, size: await duBytes(dir), used: st.mtimeMs });
    }
    let total = entries.reduce((s, e) => s + e.size, 0);
    let removed = 0;
    let freedBytes = 0;
    const never = new AbortController().signal;
    await mkdir(join(this.root, '.locks'), { recursive: true });
    for (const e of entries.sort((a, b) => a.used - b.used)) {
      if (total <= maxBytes) {
        break;
      }
      // In use by a step of any worker on this DATA_DIR: kept, whatever its size.
      const lock = await flockFile(this.lockFile(e.name), { exclusive: true, wait: false }, never);
      if (lock === null) {
        continue;
      }
      try {
        await rm(join(this.root, e.name), { recursive: true, force: true });
      } finally {
        await lock.release();
      }
      total -= e.size;
      freedBytes += e.size;
      removed++;
    }
    return { removed, freedBytes };
  }
}

/** Disk use of a tree in bytes (`du -sb`: apparent sizes, one C process instead of a JS walk). */
async function duBytes(dir: string): Promise<number> {
  try {
    const { stdout } = await execFileP('du', ['-sb', dir]);
    return Number(stdout.split('\t')[0]) || 0;
  } catch {
    return 0;
  }
}
