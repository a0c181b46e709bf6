import { execFile } from 'node:child_process';
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
  release(): void;
}

/**
 * Waiters of `sharing=locked` ids and users of each instance directory, per process: one
 * worker process owns a host (ARCHITECTURE "one worker per Linux host"), and several engines
 * in one process (tests: two "hosts" on one runCacheDir) see the same maps.
 */
const lockQueues = new Map<string, (() => void)[]>();
const lockHeld = new Set<string>();
const users = new Map<string, number>();

async function lock(key: string, signal: AbortSignal): Promise<() => void> {
  if (lockHeld.has(key)) {
    await new Promise<void>((resolveWait, reject) => {
      const queue = lockQueues.get(key) ?? [];
      lockQueues.set(key, queue);
      const onAbort = (): void => {
        const i = queue.indexOf(wake);
        if (i >= 0) {
          queue.splice(i, 1);
        }
        reject(new Error('build aborted while waiting for a locked cache mount'));
      };
      const wake = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolveWait();
      };
      queue.push(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    // The releaser handed the lock straight to us: it is still marked held.
  } else {
    lockHeld.add(key);
  }
  let released = false;
  return () => {
    if (released) {
      return;
    }
    released = true;
    const next = lockQueues.get(key)?.shift();
    if (next !== undefined) {
      next();
    } else {
      lockHeld.delete(key);
      lockQueues.delete(key);
    }
  };
}

/**
 * Directory name of cache `id` with seed identity `seed` (see the engine's `cacheMountKey`):
 * the id's hash alone without a seed; with one, the hash of both, NUL-separated. Ids are
 * host-wide names, as BuildKit's: any build on the host may use any id, seeded or not.
 */
export function runCacheName(id: string, seed: string | null): string {
  return seed === null ? opaqueName(id) : opaqueName(`${id}\0${seed}`);
}

/**
 * The host's `RUN --mount=type=cache` directories (BuildKit's cache mounts): one directory
 * per id under `root`, named by the id's hash (ids are keys, never paths), kept across
 * builds on this host and trimmed least recently used first ({@link trim}).
 *
 * Sharing, as BuildKit: `shared` — every step uses the one directory at once; `locked` — one
 * step at a time on this host, the others wait; `private` — a step that finds the directory
 * in use gets another instance (`<hash>-<n>`), created for it and kept for later private use.
 */
export class RunCacheStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /**
   * The directory for cache `id` seeded by `seed` ({@link runCacheName}). A directory made now is prepared by `init` (owner, mode,
   * seed content) in a temporary name first, then renamed into place: a crash never leaves a
   * half-seeded cache behind.
   */
  async acquire(
    id: string,
    seed: string | null,
    sharing: CacheSharing,
    init: (dir: string) => Promise<void>,
    signal: AbortSignal,
  ): Promise<RunCacheLease> {
    await mkdir(this.root, { recursive: true });
    const base = runCacheName(id, seed);
    const unlock = sharing === 'locked' ? await lock(join(this.root, base), signal) : () => undefined;
    try {
      let name = base;
      if (sharing === 'private') {
        for (let n = 1; (users.get(join(this.root, name)) ?? 0) > 0; n++) {
          name = `${base}-${n}`;
        }
      }
      const dir = join(this.root, name);
      users.set(dir, (users.get(dir) ?? 0) + 1);
      try {
        await this.ensure(dir, init);
      } catch (err) {
        this.unuse(dir);
        throw err;
      }
      let released = false;
      return {
        dir,
        release: () => {
          if (released) {
            return;
          }
          released = true;
          this.unuse(dir);
          // The directory's time stamps order the LRU trim: this use is the latest.
          const now = new Date();
          utimes(dir, now, now).catch(() => undefined);
          unlock();
        },
      };
    } catch (err) {
      unlock();
      throw err;
    }
  }

  private unuse(dir: string): void {
    const n = (users.get(dir) ?? 1) - 1;
    if (n <= 0) {
      users.delete(dir);
    } else {
      users.set(dir, n);
    }
  }

  private async ensure(dir: string, init: (dir: string) => Promise<void>): Promise<void> {
    if ((await stat(dir).catch(() => null))?.isDirectory() === true) {
      return;
    }
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
   * Removes unused cache directories, least recently used first, until the rest take at most
   * `maxBytes` (sizes by `du`, hard links counted once per directory). Directories in use are
   * kept, whatever their size. Leftover temporaries of a crash are removed too.
   */
  async trim(maxBytes: number): Promise<{ removed: number; freedBytes: number }> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    const entries: { dir: string; size: number; used: number; busy: boolean }[] = [];
    for (const name of names) {
      const dir = join(this.root, name);
      if (name.startsWith('.tmp-')) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const st = await stat(dir).catch(() => null);
      if (st === null || !st.isDirectory()) {
        continue;
      }
      entries.push({ dir, size: await duBytes(dir), used: st.mtimeMs, busy: (users.get(dir) ?? 0) > 0 });
    }
    let total = entries.reduce((s, e) => s + e.size, 0);
    let removed = 0;
    let freedBytes = 0;
    for (const e of entries.sort((a, b) => a.used - b.used)) {
      if (total <= maxBytes) {
        break;
      }
      if (e.busy) {
        continue;
      }
      await rm(e.dir, { recursive: true, force: true });
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
