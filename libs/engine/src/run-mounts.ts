// RUN --mount: what each mount type becomes for one step, with BuildKit's semantics.
// https://docs.docker.com/reference/dockerfile/#run---mount
import { randomBytes } from 'node:crypto';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { ConfineError, containerPath, resolveInRoot } from '@stratum/confine';
import type { Mount, RunInstruction } from '@stratum/dockerfile';
import { IdMap, mountIdmapped, removeMountPoint, runHostCommand } from '@stratum/layers';
import type { BindMount, TmpfsMount } from '@stratum/runtime';
import { BuildError } from './build-errors';
import { RunCacheLease, RunCacheSeedTooLargeError, RunCacheStore } from './run-cache';
import { SshAgentServer } from './ssh-agent';

/** Largest secret value, as BuildKit's (500 KiB): a file past it is refused at submission and here. */
export const MAX_SECRET_BYTES = 500 * 1024;

/** A `from=` stage or image, mounted for one step. */
export interface MountedFrom {
  /** Host path of its root filesystem (a throw-away overlay: writes to it are discarded). */
  readonly root: string;
  release(): Promise<void>;
}

/** What {@link prepareRunMounts} needs from the build it serves. */
export interface RunMountsDeps {
  /** Scratch directory of the build (copies of `rw` binds, secret tmpfs mounts). */
  readonly jobDir: string;
  /** The extracted build context (after `.dockerignore`). */
  readonly contextDir: string;
  materializeContext(): Promise<void>;
  readonly cacheStore: RunCacheStore;
  /**
   * Mounts the stage (name or index) or image `from` names; `idmapped`: seen through
   * {@link idmap} (what a bind shows the step), else as on disk (what seeds a cache).
   */
  openFrom(from: string, line: number, idmapped: boolean): Promise<MountedFrom>;
  /**
   * The step runs in a user namespace with this range: every bind source (context, cache,
   * secret, ssh socket) is given to it through an idmapped mount, so it sees their real owners.
   */
  readonly idmap?: IdMap;
  /** Identity of what `from` names (its last step's cache key, or the image's digest): part of a seeded cache mount's key. */
  fromKey(from: string, line: number): Promise<string>;
  /** Build secrets by id. */
  readonly secrets: ReadonlyMap<string, Buffer>;
  /** Private keys by ssh id (`--ssh id=path`, a project's deploy key). */
  readonly ssh?: ReadonlyMap<string, readonly Buffer[]>;
  readonly signal: AbortSignal;
  log(text: string): void;
}

/** The runtime's view of a step's mounts, and how to undo them. */
export interface PreparedRunMounts {
  readonly mounts: (BindMount | TmpfsMount)[];
  /**
   * Variables of `type=secret,env=NAME` mounts and `SSH_AUTH_SOCK` of the first ssh mount: the
   * process's only, never the key's or the image's.
   */
  readonly env: Record<string, string>;
  /** Values to mask in the step's log. */
  readonly secretValues: string[];
  /**
   * Removes the mountpoints created for the step (they must not reach its layer, as in
   * BuildKit), releases cache directories and unmounts what was mounted. Call it after the
   * process ended and before the snapshot; safe to call twice.
   */
  cleanup(): Promise<void>;
}

function fail(m: Mount, line: number, message: string): never {
  throw new BuildError(`RUN --mount=${m.raw}: ${message}`, line);
}

/** Target of a mount inside the container: a relative one is below the step's WORKDIR (as BuildKit). */
export function mountTarget(m: Mount, workdir: string): string {
  const t = m.target as string;
  return posix.normalize(posix.isAbsolute(t) ? t : posix.join(workdir, t));
}

/**
 * Resolves a bind or cache `source` below `root` (the context, or a stage's root): in the
 * context a link or `..` leading out of it is an error, as COPY's sources; in a stage's
 * filesystem links are followed inside it, as the container itself sees them.
 */
async function resolveSource(
  m: Mount,
  line: number,
  root: string,
  inContext: boolean,
): Promise<{ host: string; isDir: boolean }> {
  const source = m.source ?? '.';
  let rel: string;
  try {
    rel = await resolveInRoot(root, source, {
      symlinks: inContext ? 'refuse-escape' : 'in-root',
      what: inContext ? 'bind source' : `source in ${m.from ?? 'stage'}`,
    });
  } catch (err) {
    if (err instanceof ConfineError) {
      fail(m, line, err.message);
    }
    throw err;
  }
  const host = containerPath(root, rel);
  const st = await stat(host).catch(() => null);
  if (st === null) {
    fail(
      m,
      line,
      `source "${source}" not found ${inContext ? 'in the build context' : `in ${m.from ?? ''}`}`,
    );
  }
  return { host, isDir: st.isDirectory() };
}

/** Where an ssh mount without `target` appears: BuildKit's `/run/buildkit/ssh_agent.<n>`, n counting the step's ssh mounts. */
export function defaultSshTarget(n: number): string {
  return `/run/buildkit/ssh_agent.${n}`;
}

/**
 * Checks every mount of `instr` before anything is mounted, so a bad one leaves nothing
 * behind: unknown types, a secret or ssh id that was not given (required, or a secret wanted
 * as a variable), a secret over {@link MAX_SECRET_BYTES}.
 */
export function checkRunMounts(
  instr: RunInstruction,
  secrets: ReadonlyMap<string, Buffer>,
  ssh: ReadonlyMap<string, readonly Buffer[]> = new Map(),
): void {
  for (const m of instr.mounts) {
    switch (m.type) {
      case 'bind':
      case 'cache':
      case 'tmpfs':
        break;
      case 'secret': {
        const value = secrets.get(m.id as string);
        if (value === undefined && (m.required || m.env !== undefined)) {
          fail(
            m,
            instr.startLine,
            `secret "${m.id as string}" is required but was not given to this build (stratum build --secret id=${m.id as string},src=<file>)`,
          );
        }
        if (value !== undefined && value.length > MAX_SECRET_BYTES) {
          fail(m, instr.startLine, `secret "${m.id as string}" is larger than ${MAX_SECRET_BYTES} bytes`);
        }
        break;
      }
      case 'ssh':
        if (m.required && !ssh.has(m.id as string)) {
          fail(
            m,
            instr.startLine,
            `ssh key "${m.id as string}" is required but was not given to this build (stratum build --ssh ${m.id as string}=<private key file>)`,
          );
        }
        break;
      default:
        fail(m, instr.startLine, `unsupported mount type "${String(m.type)}"`);
    }
  }
}

/** A mountpoint that did not exist in the step's filesystem: runc creates it, we remove it after. */
interface Stub {
  /** Host path of the full target. */
  readonly target: string;
  /** Host path of its first component that was missing. */
  readonly first: string;
  /** Time stamps of the existing parent of `first`, put back once the stub is gone. */
  readonly parent: string;
  readonly atime: Date;
  readonly mtime: Date;
}

async function findStub(rootfs: string, target: string): Promise<Stub | null> {
  const resolved = await resolveInRoot(rootfs, target);
  const parts = resolved.split('/').filter(Boolean);
  let cur = '/';
  for (const part of parts) {
    const next = posix.join(cur, part);
    const host = containerPath(rootfs, next);
    if ((await lstat(host).catch(() => null)) === null) {
      const parent = containerPath(rootfs, cur);
      const st = await stat(parent);
      return {
        target: containerPath(rootfs, resolved),
        first: host,
        parent,
        atime: st.atime,
        mtime: st.mtime,
      };
    }
    cur = next;
  }
  return null;
}

/** Removes what runc made for a stub: empty directories and empty files, from the leaf up to the first missing one. */
async function removeStub(stub: Stub): Promise<void> {
  let cur = stub.target;
  for (;;) {
    const st = await lstat(cur).catch(() => null);
    if (st === null) {
      // already gone (the step removed it)
    } else if (st.isDirectory()) {
      try {
        await rmdir(cur);
      } catch {
        return; // the step wrote something beside the mountpoint: that is its own change
      }
    } else if (st.isFile() && st.size === 0) {
      await unlink(cur);
    } else {
      return;
    }
    if (cur === stub.first || cur.length <= stub.first.length) {
      break;
    }
    cur = dirname(cur);
  }
  await utimes(stub.parent, stub.atime, stub.mtime).catch(() => undefined);
}

/** An ssh agent for one mount of one step, its socket in the build's scratch dir (swept with it after a crash). */
async function startAgent(
  jobDir: string,
  keys: readonly Buffer[],
  m: Mount,
): Promise<{ socketPath: string; close(): Promise<void> }> {
  const dir = join(jobDir, `ssh-${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const agent = await SshAgentServer.listen(join(dir, 'agent'), keys, {
      ...(m.uid !== undefined ? { uid: m.uid } : {}),
      ...(m.gid !== undefined ? { gid: m.gid } : {}),
      ...(m.mode !== undefined ? { mode: m.mode } : {}),
    });
    return {
      socketPath: agent.socketPath,
      close: async () => {
        await agent.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Go's `path.Clean` for an absolute or relative slash path: BuildKit's default cache id is the cleaned target. */
function cleanPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** What names a cache mount's directory on the host, and how a new one is made. */
export interface CacheMountKey {
  /** `id`, default the cleaned target as written (BuildKit's `path.Clean(target)`). */
  readonly id: string;
  /**
   * BuildKit keys a cache directory by `id` plus the identity of its seed (`<id>:<ref id>`):
   * the `from` stage or image, and the `uid`/`gid`/`mode` asked for when there is no
   * `source` (BuildKit makes them a `mkdir` over `from`, scratch by default). Null: no seed,
   * the id alone (the same directory as before seeds were keyed).
   */
  readonly seed: string | null;
  /** Whether `uid`/`gid`/`mode` make the new directory (BuildKit ignores them with a `source`). */
  readonly perms: boolean;
  /** Path below the directory that the step sees: `from`'s `source`; null for the whole directory. */
  readonly source: string | null;
}

/**
 * The key of a `type=cache` mount, as BuildKit's dockerfile2llb and cache mount manager
 * (frontend/dockerfile/dockerfile2llb/convert_runmount.go, solver/llbsolver/mounts/mount.go).
 */
export function cacheMountKey(m: Mount, fromKey: string | null): CacheMountKey {
  const id = m.id ?? cleanPath(m.target as string);
  const source = posix.join('/', m.source ?? '/');
  const perms = source === '/' && (m.uid !== undefined || m.gid !== undefined || m.mode !== undefined);
  const parts: string[] = [];
  if (fromKey !== null) {
    parts.push(`from=${fromKey}`);
  }
  if (perms) {
    parts.push(`mkdir=${m.uid ?? 0}:${m.gid ?? 0}:${(m.mode ?? 0o755).toString(8)}`);
  }
  return {
    id,
    seed: parts.length > 0 ? parts.join(' ') : null,
    perms,
    // Without `from` BuildKit seeds from scratch: a `source` names nothing, the whole directory is mounted.
    source: fromKey !== null && !perms ? source : null,
  };
}

/**
 * The host path of `source` inside a seeded cache directory `dir`, resolved as the stage's own
 * filesystem resolves it (links followed, never out of `dir`). BuildKit's seeded cache directory
 * is a copy of the whole `from` root, made once when the directory is made (see
 * {@link prepareRunMounts}), of which each mount shows its `source`; so a later whole-`from`
 * mount of it shows the whole root. A `source` missing from the directory (a step removed it,
 * or the directory was made before it held the whole root) is copied from the seed
 * (`seedHost()`) again, beside its place then renamed: a concurrent step seeding the same path
 * finds it whole or not at all. A `source` that is not a directory is an error, as in the seed.
 */
async function seedCacheSource(
  dir: string,
  source: string,
  seedHost: () => Promise<string>,
  notDir: () => never,
): Promise<string> {
  const rel = await resolveInRoot(dir, source, { symlinks: 'in-root', what: 'cache source' });
  const host = containerPath(dir, rel);
  const st = await stat(host).catch(() => null);
  if (st !== null) {
    return st.isDirectory() ? host : notDir();
  }
  const from = await seedHost();
  await mkdir(dirname(host), { recursive: true });
  const tmp = join(dirname(host), `.stratum-seed-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp);
  try {
    await copyTree(from, tmp, true);
    await rename(tmp, host);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if ((await stat(host).catch(() => null)) === null) {
      throw err;
    }
  }
  return host;
}

async function copyTree(source: string, dest: string, isDir: boolean): Promise<void> {
  // cp -a keeps owners, modes, links and times: the step sees the bound tree as it is.
  await runHostCommand('cp', ['-a', '--reflink=auto', isDir ? `${source}/.` : source, dest]);
}

/**
 * Turns the mounts of `instr` into runtime mounts for a step whose root filesystem is `rootfs`
 * (mounted). On an error everything done so far is undone before it is thrown.
 */
export async function prepareRunMounts(
  instr: RunInstruction,
  rootfs: string,
  workdir: string,
  deps: RunMountsDeps,
): Promise<PreparedRunMounts> {
  checkRunMounts(instr, deps.secrets, deps.ssh);
  const line = instr.startLine;
  const mounts: (BindMount | TmpfsMount)[] = [];
  const env: Record<string, string> = {};
  const secretValues: string[] = [];
  const undo: (() => Promise<void>)[] = [];
  const stubs: Stub[] = [];
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) {
      return;
    }
    cleaned = true;
    const errors: Error[] = [];
    // Stubs first (the rootfs is still mounted), deepest first; then the rest in reverse.
    for (const s of [...stubs].reverse()) {
      await removeStub(s).catch((e: unknown) => errors.push(e as Error));
    }
    for (const u of [...undo].reverse()) {
      await u().catch((e: unknown) => errors.push(e as Error));
    }
    if (errors.length > 0) {
      throw errors[0];
    }
  };
  const addStub = async (target: string): Promise<void> => {
    const s = await findStub(rootfs, target);
    if (s !== null && !stubs.some((x) => s.target.startsWith(`${x.target}/`) || s.target === x.target)) {
      stubs.push(s);
    }
  };
  const fromMounts = new Map<string, MountedFrom>();
  /** Roots of `from=` mounts already seen through the step's uid range. */
  const shiftedRoots: string[] = [];
  const openFrom = async (from: string, idmapped = deps.idmap !== undefined): Promise<MountedFrom> => {
    const key = `${idmapped ? 'i' : 'p'}:${from}`;
    let f = fromMounts.get(key);
    if (f === undefined) {
      f = await deps.openFrom(from, line, idmapped);
      fromMounts.set(key, f);
      const opened = f;
      undo.push(() => opened.release());
      if (idmapped) {
        shiftedRoots.push(opened.root);
      }
    }
    return f;
  };
  try {
    const secretFiles: { m: Mount; value: Buffer; destination: string }[] = [];
    let sshCount = 0;
    for (const m of instr.mounts) {
      switch (m.type) {
        case 'bind': {
          const destination = mountTarget(m, workdir);
          let src: { host: string; isDir: boolean };
          if (m.from !== undefined) {
            const from = await openFrom(m.from);
            src = await resolveSource(m, line, from.root, false);
          } else {
            await deps.materializeContext();
            src = await resolveSource(m, line, deps.contextDir, true);
            if (!m.readOnly) {
              // rw: the step may write, the writes are thrown away, the context never changes.
              const copy = join(deps.jobDir, 'mounts', randomBytes(8).toString('hex'));
              await mkdir(copy, { recursive: true });
              undo.push(() => rm(copy, { recursive: true, force: true }));
              await copyTree(src.host, copy, src.isDir);
              src = { host: src.isDir ? copy : join(copy, posix.basename(src.host)), isDir: src.isDir };
            }
          }
          await addStub(destination);
          // A stage's root is a throw-away overlay: rw writes go to its upper dir, then away.
          mounts.push({ source: src.host, destination, readonly: m.readOnly });
          break;
        }
        case 'cache': {
          const destination = mountTarget(m, workdir);
          const key = cacheMountKey(m, m.from !== undefined ? await deps.fromKey(m.from, line) : null);
          const notDir = (): never =>
            fail(m, line, `source "${m.source ?? '.'}" in ${m.from as string} is not a directory`);
          // The mount's `source` in a seeded cache directory (see seedCacheSource).
          const sourceIn = (dir: string): Promise<string> =>
            seedCacheSource(
              dir,
              key.source as string,
              async () => {
                const from = await openFrom(m.from as string, false);
                const seed = await resolveSource(m, line, from.root, false);
                return seed.isDir ? seed.host : notDir();
              },
              notDir,
            );
          const lease: RunCacheLease = await deps.cacheStore.acquire(
            key.id,
            key.seed,
            m.sharing ?? 'shared',
            async (dir) => {
              // BuildKit's new cache directory: the mode/owner asked for (then empty, whatever
              // `from` holds), or a copy of `from`'s whole root (its owner and mode) whatever
              // `source` this mount shows of it, or 0755 root's.
              if (key.perms) {
                await chmod(dir, m.mode ?? 0o755);
                await chown(dir, m.uid ?? 0, m.gid ?? 0);
              } else if (key.source !== null) {
                // copied as on disk: the cache keeps in-image owners, as every layer does
                const from = await openFrom(m.from as string, false);
                if (key.source !== '/' && !(await resolveSource(m, line, from.root, false)).isDir) {
                  notDir(); // a `source` the stage lacks fails here too: before any copy
                }
                try {
                  await deps.cacheStore.copySeed(from.root, dir);
                } catch (err) {
                  if (err instanceof RunCacheSeedTooLargeError) {
                    fail(m, line, `cannot seed the cache from ${m.from as string}: ${err.message}`);
                  }
                  throw err;
                }
              } else {
                await chmod(dir, 0o755);
                await chown(dir, 0, 0);
              }
            },
            deps.signal,
          );
          undo.push(() => lease.release());
          let host = lease.dir;
          if (key.source !== null && key.source !== '/') {
            host = await sourceIn(lease.dir);
          }
          await addStub(destination);
          mounts.push({ source: host, destination, readonly: m.readOnly });
          break;
        }
        case 'tmpfs': {
          const destination = mountTarget(m, workdir);
          await addStub(destination);
          mounts.push({
            type: 'tmpfs',
            destination,
            ...(m.size !== undefined && m.size > 0 ? { sizeBytes: m.size } : {}),
          });
          break;
        }
        case 'secret': {
          const value = deps.secrets.get(m.id as string);
          if (value === undefined) {
            deps.log(`line ${line}: secret "${m.id as string}" not given; its optional mount is skipped\n`);
            break;
          }
          secretValues.push(value.toString('utf8'));
          if (m.env !== undefined) {
            env[m.env] = value.toString('utf8');
          }
          if (m.target !== undefined) {
            secretFiles.push({ m, value, destination: mountTarget(m, workdir) });
          }
          break;
        }
        case 'ssh': {
          const n = sshCount++;
          const keys = deps.ssh?.get(m.id as string);
          if (keys === undefined) {
            deps.log(`line ${line}: ssh key "${m.id as string}" not given; its optional mount is skipped\n`);
            break;
          }
          const destination = m.target !== undefined ? mountTarget(m, workdir) : defaultSshTarget(n);
          const agent = await startAgent(deps.jobDir, keys, m);
          undo.push(() => agent.close());
          await addStub(destination);
          mounts.push({ source: agent.socketPath, destination, readonly: false });
          // As BuildKit: the first ssh mount of the step is the one ssh clients find.
          env.SSH_AUTH_SOCK ??= destination;
          break;
        }
      }
    }
    if (secretFiles.length > 0) {
      // The values live on a tmpfs of this step only: never on the host's disk, gone at unmount.
      const dir = join(deps.jobDir, `secrets-${randomBytes(8).toString('hex')}`);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const bytes = secretFiles.reduce((s, f) => s + f.value.length + 4096, 64 * 1024);
      await runHostCommand('mount', [
        '-t',
        'tmpfs',
        '-o',
        `size=${bytes},mode=0700,nosuid,nodev,noexec`,
        'tmpfs',
        dir,
      ]);
      undo.push(async () => {
        await runHostCommand('umount', [dir]);
        await rm(dir, { recursive: true, force: true });
      });
      for (const [i, f] of secretFiles.entries()) {
        const file = join(dir, String(i));
        await writeFile(file, f.value, { mode: 0o600 });
        await chown(file, f.m.uid ?? 0, f.m.gid ?? 0);
        await chmod(file, f.m.mode ?? 0o400);
        await addStub(f.destination);
        mounts.push({ source: file, destination: f.destination, readonly: true });
      }
    }
    if (deps.idmap !== undefined) {
      await idmapSources(deps.idmap, deps.jobDir, mounts, shiftedRoots, undo);
    }
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
  return { mounts, env, secretValues, cleanup };
}

/**
 * For a step in a user namespace: replaces each bind source by an idmapped view of it (in the
 * build's scratch dir, unmounted by `undo`), so the step sees the owners the host has on disk
 * (a cache dir made root's is its root's; a secret made uid 1000's is its 1000's). Sources in
 * a `from=` root mounted through the range already are kept.
 */
async function idmapSources(
  map: IdMap,
  jobDir: string,
  mounts: (BindMount | TmpfsMount)[],
  shiftedRoots: readonly string[],
  undo: (() => Promise<void>)[],
): Promise<void> {
  const pairs: [string, string][] = [];
  const dir = join(jobDir, 'idmap');
  await mkdir(dir, { recursive: true, mode: 0o711 });
  for (const m of mounts) {
    if ('type' in m || shiftedRoots.some((r) => m.source === r || m.source.startsWith(`${r}/`))) {
      continue;
    }
    const target = join(dir, randomBytes(8).toString('hex'));
    if ((await stat(m.source)).isDirectory()) {
      await mkdir(target);
    } else {
      await writeFile(target, '', { mode: 0o600 });
    }
    undo.push(() => removeMountPoint(target));
    pairs.push([m.source, target]);
    m.source = target;
  }
  await mountIdmapped(map, pairs);
}
