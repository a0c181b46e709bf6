import { createHash, randomBytes } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { ConfineError, containerPath, resolveInRoot } from '@stratum/confine';
import { RunInstruction } from '@stratum/dockerfile';
import { ContainerFs } from '@stratum/images';
import { diskUsage } from '@stratum/layers';
import { stableJson, stepCacheKey } from './build-cache';
import { BuildError } from './build-errors';
import { ImageState } from './image-state';
import { commandArgs, stageShell } from './metadata-steps';
import { checkRunMounts, mountTarget, PreparedRunMounts, prepareRunMounts } from './run-mounts';
import { SecretMasker } from './secret-mask';
import { hashSources } from './source-hash';
import { BuildAborted, PreparedStep, StepHost, StepInput, stateWorkdir } from './step-host';

/**
 * RUN: its cache key (command, environment, user, workdir, network, mounts and what its bind
 * mounts show) and its work: the process in a runc container on the stage's layers, with its
 * `--mount`s (run-mounts.ts), its network, its limits, and its output masked for secrets.
 */
export async function prepareRunStep(
  host: StepHost,
  input: StepInput<RunInstruction>,
): Promise<PreparedStep> {
  const { state, instr, parent, instruction, workdir, runEnv, stepIndex } = input;
  const cfg = state.config.config ?? {};
  const epoch = host.epoch;
  if (instr.network === 'host' && host.options.allowHostNetwork !== true) {
    throw new BuildError(
      'RUN --network=host is not allowed on this service (an operator can enable it with ALLOW_HOST_NETWORK=true)',
      instr.startLine,
    );
  }
  // A missing required secret fails here, before the step is looked up or run.
  checkRunMounts(instr, host.ctx.secrets ?? new Map<string, Buffer>(), host.ctx.ssh);
  const network = stepNetwork(host, instr);
  const args = runArgs(instr, stageShell(state));
  const key = stepCacheKey({
    parent,
    instruction,
    inputs: {
      args,
      env: runEnv,
      user: cfg.User ?? '',
      workdir,
      // the network the step really gets: a step that passed with it may fail without it
      network,
      security: instr.security ?? 'sandbox',
      mounts: instr.mounts.map((m) => m.raw),
      // What bind mounts show the step (cache and secret content never keys it, as BuildKit).
      binds: await bindInputs(host, instr, workdir),
      epoch,
    },
  });
  return {
    key,
    metadata: null,
    createdBy: `RUN ${args.join(' ')}`,
    run: () =>
      host.withContainer(
        state,
        (fs) => runInContainer(host, fs, state, instr, args, runEnv, stepIndex, network),
        host.options.userns !== undefined ? { idmap: host.options.userns } : {},
      ),
  };
}

/**
 * `RUN --network=none|host` for its step; `default` (or nothing): the build's `network`,
 * else the operator's default. With the sandbox turned off, only a build that asked for it
 * by name fails; the others get `none`.
 */
function stepNetwork(host: StepHost, instr: RunInstruction): 'sandbox' | 'none' | 'host' {
  if (instr.network === 'host' || instr.network === 'none') {
    return instr.network;
  }
  const wanted = host.data.network ?? host.options.stepNetworkDefault ?? 'sandbox';
  if (wanted === 'sandbox' && host.options.allowSandboxNetwork === false) {
    if (host.data.network === 'sandbox') {
      throw new BuildError(
        'network=sandbox is turned off on this service (ALLOW_SANDBOX_NETWORK=false); build with network=none',
        instr.startLine,
      );
    }
    return 'none';
  }
  return wanted;
}

async function runInContainer(
  host: StepHost,
  fs: ContainerFs,
  state: ImageState,
  instr: RunInstruction,
  args: string[],
  runEnv: Record<string, string>,
  stepIndex: number | null,
  network: 'sandbox' | 'none' | 'host',
): Promise<void> {
  const cfg = state.config.config ?? {};
  const workdir = stateWorkdir(state);
  const secrets = host.ctx.secrets ?? new Map<string, Buffer>();
  const prepared = await prepareRunMounts(instr, fs.merged, workdir, {
    jobDir: host.jobDir,
    contextDir: host.context.dir,
    materializeContext: () => host.context.materialize(),
    cacheStore: host.engine.runCache,
    fromKey: async (from, line) => fromIdentity(await host.fromState(from, line)),
    openFrom: async (from, line, idmapped) =>
      host.mountState(
        `${fs.id}-m${randomBytes(3).toString('hex')}`,
        await host.fromState(from, line),
        idmapped && host.options.userns !== undefined ? { idmap: host.options.userns } : {},
      ),
    ...(host.options.userns !== undefined ? { idmap: host.options.userns } : {}),
    secrets,
    ...(host.ctx.ssh !== undefined ? { ssh: host.ctx.ssh } : {}),
    signal: host.ctx.signal,
    log: (t) => host.ctx.reporter.log(null, 'system', t),
  });
  try {
    await runProcess(
      host,
      fs,
      instr,
      args,
      { ...runEnv, ...prepared.env },
      stepIndex,
      prepared,
      workdir,
      cfg.User,
      network,
    );
  } finally {
    await prepared.cleanup();
  }
}

/** The process of a RUN step, its output masked for the step's secrets. */
async function runProcess(
  host: StepHost,
  fs: ContainerFs,
  instr: RunInstruction,
  args: string[],
  env: Record<string, string>,
  stepIndex: number | null,
  prepared: PreparedRunMounts,
  workdir: string,
  user: string | undefined,
  network: 'sandbox' | 'none' | 'host',
): Promise<void> {
  const masker = {
    stdout: new SecretMasker(prepared.secretValues),
    stderr: new SecretMasker(prepared.secretValues),
  };
  const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  const disk = watchDiskUse(fs.upper, host.options.stepDiskBytes ?? DEFAULT_STEP_DISK_BYTES);
  let result;
  try {
    result = await host.options.runtime.run(
      `stratum-${fs.id}`,
      {
        rootfs: fs.merged,
        args,
        env,
        cwd: workdir,
        ...(user ? { user } : {}),
        network,
        // the build's steps share one sandbox network, one step at a time (released in cleanup)
        sandboxShare: host.data.buildId,
        mounts: prepared.mounts,
        // runc's state, the network and the bundle go while the next step runs (cleanup waits)
        deferTeardown: true,
        ...(host.options.userns !== undefined ? { userns: host.options.userns } : {}),
        // setuid binaries do not elevate (no_new_privs); the runtime adds its seccomp filter.
        noNewPrivileges: true,
        pidsLimit: host.options.stepPidsLimit ?? 4096,
        memoryBytes: host.options.stepMemoryBytes ?? 4 * 1024 * 1024 * 1024,
      },
      {
        onStdout: (c) =>
          host.ctx.reporter.log(
            stepIndex,
            'stdout',
            masker.stdout.push(decoder.stdout.decode(c, { stream: true })),
          ),
        onStderr: (c) =>
          host.ctx.reporter.log(
            stepIndex,
            'stderr',
            masker.stderr.push(decoder.stderr.decode(c, { stream: true })),
          ),
        signal: AbortSignal.any([host.ctx.signal, disk.signal]),
        timeoutMs: host.options.stepTimeoutMs,
        onStarted: () => host.containerStarted(),
      },
    );
  } catch (err) {
    disk.stop();
    const reason = (err as { reason?: string }).reason;
    if (reason === 'USER_UNKNOWN' || reason === 'GROUP_UNKNOWN' || reason === 'START_FAILED') {
      throw new BuildError(`RUN: ${(err as Error).message}`, instr.startLine);
    }
    throw err;
  }
  for (const stream of ['stdout', 'stderr'] as const) {
    const rest = masker[stream].flush() + decoder[stream].decode();
    if (rest !== '') {
      host.ctx.reporter.log(stepIndex, stream, masker[stream].push(rest) + masker[stream].flush());
    }
  }
  disk.stop();
  if (disk.exceeded() || (!result.cancelled && (await disk.check()))) {
    throw new BuildError(
      `RUN wrote more than the step's disk limit of ${disk.limit} bytes (STEP_DISK_BYTES): the step was stopped`,
      instr.startLine,
    );
  }
  if (result.cancelled) {
    throw new BuildAborted();
  }
  if (result.timedOut) {
    throw new BuildError(`RUN timed out after ${host.options.stepTimeoutMs / 1000}s`, instr.startLine);
  }
  if (result.exitCode !== 0) {
    const oom =
      result.oomKilled === true
        ? ` (killed: out of memory, the step's limit is ${host.options.stepMemoryBytes ?? 4 * 1024 * 1024 * 1024} bytes)`
        : '';
    const offline = network === 'none' ? ' (the step ran with network=none: no network but loopback)' : '';
    throw new BuildError(
      `process "${args.join(' ')}" did not complete successfully: exit code: ${result.exitCode ?? result.signal ?? 'unknown'}${oom}${offline}`,
      instr.startLine,
    );
  }
}

/** What a stage or image is, for a seeded cache mount's key: its step cache key, else its layers. */
function fromIdentity(state: ImageState): string {
  return state.cacheKey ?? `layers:${(state.config.rootfs?.diff_ids ?? []).join(',')}`;
}

/**
 * Cache key input of a RUN's bind mounts: the digest of each bound context tree (memoized
 * per context blob, as COPY's sources), or the key of the stage/image it comes from.
 */
async function bindInputs(host: StepHost, instr: RunInstruction, workdir: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const m of instr.mounts) {
    if (m.type !== 'bind') {
      continue;
    }
    const target = mountTarget(m, workdir);
    const source = m.source ?? '.';
    if (m.from !== undefined) {
      const from = await host.fromState(m.from, instr.startLine);
      out.push({ target, from: from.cacheKey, source });
      continue;
    }
    const memoKey = `bind:${createHash('sha256')
      .update(stableJson({ v: 1, ctx: host.data.contextDigest, dockerfile: host.data.dockerfile, source }))
      .digest('hex')}`;
    let digest = (await host.engine.cacheIndex.getMemo?.(memoKey)) ?? null;
    if (digest === null) {
      await host.context.materialize();
      let rel: string;
      try {
        rel = await resolveInRoot(host.context.dir, source, {
          symlinks: 'refuse-escape',
          what: 'bind source',
        });
      } catch (err) {
        throw err instanceof ConfineError
          ? new BuildError(`RUN --mount=${m.raw}: ${err.message}`, instr.startLine)
          : err;
      }
      const bound = containerPath(host.context.dir, rel);
      const st = await lstat(bound).catch(() => null);
      if (st === null) {
        throw new BuildError(
          `RUN --mount=${m.raw}: source "${source}" not found in the build context`,
          instr.startLine,
        );
      }
      digest = await hashSources([{ rel: '.', host: bound, stat: st }], undefined, host.context.knownDigest);
      await host.engine.cacheIndex.putMemo?.(memoKey, digest);
    }
    out.push({ target, source, digest });
  }
  return out;
}

/** argv of a RUN: exec form as is; shell form through the stage's shell, heredocs inlined. */
export function runArgs(instr: RunInstruction, shell: readonly string[]): string[] {
  if (instr.command.form === 'exec') {
    return commandArgs(instr.command, shell);
  }
  const cmd = instr.command.command;
  if (instr.heredocs.length === 0) {
    return [...shell, cmd];
  }
  // `RUN <<EOF` alone: the heredoc is the script. Otherwise the shell reads the heredocs itself.
  if (/^<<-?\s*["']?[A-Za-z0-9_]+["']?\s*$/.test(cmd.trim())) {
    return [...shell, instr.heredocs[0].content];
  }
  const bodies = instr.heredocs.map((h) => `${h.content}${h.name}\n`).join('');
  return [...shell, `${cmd}\n${bodies}`];
}

const DEFAULT_STEP_DISK_BYTES = 64 * 1024 * 1024 * 1024;
const DISK_CHECK_INTERVAL_MS = 2000;

/**
 * Watches what a RUN step writes to its layer (its overlay upper dir), as `du` counts, every 2 s: a
 * step that would fill the host's disk is stopped (its signal aborts) once past `limit`, and
 * the build fails naming the limit. `du -sx` stays on the upper dir's filesystem and counts
 * allocated bytes, which is what fills the disk (a sparse file counts only what it holds).
 */
function watchDiskUse(
  upper: string,
  limit: number,
): {
  signal: AbortSignal;
  limit: number;
  exceeded(): boolean;
  check(): Promise<boolean>;
  stop(): void;
} {
  const controller = new AbortController();
  let over = false;
  let busy = false;
  const check = async (): Promise<boolean> => {
    const used = await diskUsage(upper).catch(() => 0);
    if (used > limit) {
      over = true;
    }
    return over;
  };
  const timer = setInterval(() => {
    if (busy || over) {
      return;
    }
    busy = true;
    void check()
      .then((exceeded) => {
        if (exceeded) {
          controller.abort();
        }
      })
      .finally(() => {
        busy = false;
      });
  }, DISK_CHECK_INTERVAL_MS);
  timer.unref();
  return {
    signal: controller.signal,
    limit,
    exceeded: () => over,
    check,
    stop: () => clearInterval(timer),
  };
}
