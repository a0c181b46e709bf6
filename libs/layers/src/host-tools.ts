import { spawn, type ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { setPriority } from 'node:os';
import { execHelper, HelperSpawnError, type HelperResult } from './exec-helper';
import { LayerError } from './layer-error';

const availability = new Map<string, Promise<boolean>>();

/** Whether a host command can be started (cached per process; no PATH parsing here). */
export function hasTool(cmd: string): Promise<boolean> {
  let p = availability.get(cmd);
  if (!p) {
    p = new Promise<boolean>((resolve) => {
      const child = spawn(cmd, ['--version'], { stdio: 'ignore' });
      child.on('error', () => resolve(false));
      child.on('close', () => resolve(true));
    });
    availability.set(cmd, p);
  }
  return p;
}

/** Output of a finished command. */
export interface RunResult {
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs a command to completion and collects its output. Throws LAYER_TOOL_MISSING when it
 * is not installed and LAYER_TOOL_FAILED on a non-zero exit (with stderr in the message).
 */
export async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; allowFail?: boolean } = {},
): Promise<RunResult & { code: number }> {
  // Through the exec helper: no fork of this (large) process per command (see exec-helper.ts).
  let out: HelperResult;
  try {
    out = await execHelper.exec([cmd, ...args], options.cwd !== undefined ? { cwd: options.cwd } : {});
  } catch (e) {
    if (e instanceof HelperSpawnError && e.code === 'ENOENT') {
      throw new LayerError('LAYER_TOOL_MISSING', `${cmd} is not installed`, undefined, { cause: e });
    }
    throw new LayerError('LAYER_TOOL_FAILED', `${cmd} could not start: ${(e as Error).message}`, undefined, {
      cause: e,
    });
  }
  const stderr = out.stderr.toString('utf8').trim();
  const result = { stdout: out.stdout, stderr, code: out.code };
  if (out.code !== 0 && options.allowFail !== true) {
    throw new LayerError(
      'LAYER_TOOL_FAILED',
      `${cmd} ${args.join(' ')} failed (exit ${out.code < 0 ? `signal ${-out.code}` : out.code}): ${stderr}`,
    );
  }
  return result;
}

/** A child process used as a byte filter (stdin -> stdout), e.g. pigz or zstd. */
export interface FilterProcess {
  duplex: Duplex;
  /** Resolves when the process exited 0; rejects otherwise. */
  exited: Promise<void>;
  child: ChildProcess;
}

export function spawnFilter(cmd: string, args: string[], options: { niceness?: number } = {}): FilterProcess {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  if (options.niceness !== undefined && child.pid !== undefined) {
    try {
      setPriority(child.pid, options.niceness);
    } catch {
      // exited already, or not allowed: it runs at our own priority
    }
  }
  const err: Buffer[] = [];
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      const error =
        e.code === 'ENOENT'
          ? new LayerError('LAYER_TOOL_MISSING', `${cmd} is not installed`, undefined, { cause: e })
          : new LayerError('LAYER_TOOL_FAILED', `${cmd} failed: ${e.message}`, undefined, { cause: e });
      duplex.destroy(error);
      reject(error);
    });
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve();
      } else {
        const error = new LayerError(
          'LAYER_TOOL_FAILED',
          `${cmd} exited with ${code ?? signal ?? 'unknown'}: ${Buffer.concat(err).toString('utf8').trim()}`,
        );
        duplex.destroy(error);
        reject(error);
      }
    });
  });
  // Avoid unhandled rejections when the caller only watches the stream.
  exited.catch(() => undefined);
  return { duplex, exited, child };
}

/** Outcome of {@link unmount}: done, or the errno umount(2) failed with and why. */
export type UnmountOutcome = { ok: true } | { ok: false; errno: number; message: string };

/**
 * umount(2) of `target` (`lazy`: MNT_DETACH, as `umount -l`) in the exec helper: no umount(8)
 * process (exec, libmount, a read of the mount table) per unmount, one of the costs of every
 * step. EINVAL: not a mount point; ENOENT: no such path; EBUSY: in use.
 */
export async function unmount(target: string, options: { lazy?: boolean } = {}): Promise<UnmountOutcome> {
  const out = await helperMount({ op: 'umount', target, ...(options.lazy === true ? { lazy: true } : {}) });
  if (out.code === 0) {
    return { ok: true };
  }
  const message = out.stderr.toString('utf8').trim();
  return { ok: false, errno: Number(/\[Errno (\d+)\]/.exec(message)?.[1] ?? 0), message };
}

/**
 * Mounts an overlay at `target` with `options` (mount(2) data: at most a page), its relative
 * lowerdir names resolved against `cwd`: done by a thread of the exec helper, no mount(8).
 */
export async function mountOverlayAt(cwd: string, target: string, options: string): Promise<void> {
  const out = await helperMount({ op: 'overlay', cwd, target, options });
  if (out.code !== 0) {
    throw new LayerError(
      'LAYER_MOUNT_FAILED',
      `mounting overlay at ${target} failed: ${out.stderr.toString('utf8').trim()}`,
    );
  }
}

/**
 * Mounts a read-only sysfs (nosuid, nodev, noexec) at `target` as seen from the network
 * namespace `netns` (a path such as /proc/PID/ns/net): its class/net lists that namespace's
 * interfaces. Done by a thread of the exec helper that joins the namespace (no nsenter + mount).
 */
export async function mountSysfsOf(netns: string, target: string): Promise<void> {
  const out = await helperMount({ op: 'sysfs', netns, target });
  if (out.code !== 0) {
    throw new LayerError(
      'LAYER_MOUNT_FAILED',
      `mounting sysfs at ${target}: ${out.stderr.toString('utf8').trim()}`,
    );
  }
}

async function helperMount(request: Parameters<typeof execHelper.mount>[0]): Promise<HelperResult> {
  try {
    return await execHelper.mount(request);
  } catch (e) {
    throw new LayerError(
      'LAYER_TOOL_FAILED',
      `the exec helper could not run a mount request: ${(e as Error).message}`,
      undefined,
      {
        cause: e,
      },
    );
  }
}
