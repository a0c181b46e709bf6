import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { BuildJobData, Digest, StepRecord, StepStatus } from '@stratum/contracts';
import {
  AddInstruction,
  BuildPlan,
  CopyInstruction,
  createStageScope,
  expandInstruction,
  Instruction,
  parseDockerfile,
  planBuild,
  PlannedStage,
  RunInstruction,
} from '@stratum/dockerfile';
import { ContainerFilesystems, ContainerFs, ImageService } from '@stratum/images';
import { applyLayer, detectCompression, LayerCache } from '@stratum/layers';
import { resolveUser, RuncRuntime } from '@stratum/runtime';
import { BlobStore, RepositoryStore } from '@stratum/storage';
import { BuildError } from './build-errors';
import { BuildReporter } from './build-reporter';
import { containerPath, copyIntoContainer } from './file-copy';
import { addHistory, cloneState, envMap, ImageState, scratchState } from './image-state';
import { applyMetadata, commandArgs, isMetadataInstruction, stageShell } from './metadata-steps';

export interface BuildEngineOptions {
  readonly blobs: BlobStore;
  readonly repositories: RepositoryStore;
  readonly runtime: RuncRuntime;
  /** Per-build scratch dirs live here (`<jobsDir>/<buildId>`). */
  readonly jobsDir: string;
  /** The host's extracted-layer cache. */
  readonly layerCacheDir: string;
  readonly stepTimeoutMs: number;
  readonly compression?: 'gzip' | 'zstd';
}

export interface BuildRunContext {
  readonly signal: AbortSignal;
  readonly reporter: BuildReporter;
}

export interface BuildOutcome {
  readonly imageDigest: Digest;
  readonly configDigest: Digest;
}

interface StepRef {
  readonly index: number;
  readonly stage: PlannedStage;
  readonly instruction: Instruction;
}

/** Thrown inside the engine when the build's signal fires. */
class BuildAborted extends Error {
  constructor() {
    super('build aborted');
    this.name = 'BuildAborted';
  }
}

const MAX_DOCKERFILE = 1024 * 1024;

/**
 * Executes Dockerfile builds: parses and plans, then runs each stage's steps on overlay
 * container filesystems (RUN with runc, COPY/ADD by file copy), snapshots every filesystem
 * step's upper dir into a layer blob, and writes the final image with its tags.
 * Independent stages run in parallel.
 */
export class BuildEngine {
  readonly images: ImageService;
  readonly cache: LayerCache;

  constructor(private readonly options: BuildEngineOptions) {
    this.images = new ImageService(options.blobs, options.repositories);
    this.cache = new LayerCache(options.layerCacheDir);
  }

  async build(data: BuildJobData, ctx: BuildRunContext): Promise<BuildOutcome> {
    const jobDir = join(this.options.jobsDir, data.buildId);
    await rm(jobDir, { recursive: true, force: true });
    const contextDir = join(jobDir, 'context');
    await mkdir(contextDir, { recursive: true });
    const filesystems = new ContainerFilesystems({
      blobs: this.options.blobs,
      images: this.images,
      cache: this.cache,
      root: join(jobDir, 'containers'),
    });
    const run = new BuildRun(this, this.options, data, ctx, contextDir, filesystems);
    try {
      ctx.reporter.log(null, 'system', `loading build context ${data.contextDigest}\n`);
      await applyLayer(await this.options.blobs.get(data.contextDigest), contextDir);
      return await run.execute();
    } finally {
      await run.cleanup();
      await rm(jobDir, { recursive: true, force: true });
    }
  }
}

/** One build's execution state. */
class BuildRun {
  private readonly steps: StepRecord[] = [];
  private readonly live = new Set<ContainerFs>();
  private readonly stageNames = new Map<string, number>();

  constructor(
    private readonly engine: BuildEngine,
    private readonly options: BuildEngineOptions,
    private readonly data: BuildJobData,
    private readonly ctx: BuildRunContext,
    private readonly contextDir: string,
    private readonly filesystems: ContainerFilesystems,
  ) {}

  private checkAbort(): void {
    if (this.ctx.signal.aborted) {
      throw new BuildAborted();
    }
  }

  async execute(): Promise<BuildOutcome> {
    const plan = await this.plan();
    for (const s of plan.stages) {
      if (s.name !== undefined) {
        this.stageNames.set(s.name.toLowerCase(), s.index);
      }
    }
    const stepRefs: StepRef[] = [];
    for (const stage of plan.stages) {
      for (const instruction of stage.stage.instructions) {
        stepRefs.push({ index: stepRefs.length, stage, instruction });
      }
    }
    for (const ref of stepRefs) {
      const record: StepRecord = {
        index: ref.index,
        name: stepName(ref),
        status: StepStatus.Pending,
        startedAt: null,
        finishedAt: null,
        durationMs: null,
        layerSize: null,
      };
      this.steps.push(record);
      await this.ctx.reporter.step(record);
    }
    const results = new Map<number, ImageState>();
    for (const group of plan.parallelGroups) {
      await Promise.all(
        group.map(async (stageIndex) => {
          const stage = plan.stages.find((s) => s.index === stageIndex);
          if (stage === undefined) {
            return;
          }
          const state = await this.runStage(plan, stage, stepRefs, results);
          results.set(stageIndex, state);
        }),
      );
    }
    const final = results.get(plan.target);
    if (final === undefined) {
      throw new BuildError(`target stage ${plan.target} produced no image`);
    }
    final.config.created = new Date().toISOString();
    const written = await this.engine.images.write({
      config: final.config,
      layers: final.layers,
      tags: this.data.tags,
    });
    this.ctx.reporter.log(
      null,
      'system',
      `writing image ${written.manifestDigest}${this.data.tags.length ? ` as ${this.data.tags.join(', ')}` : ''}\n`,
    );
    return { imageDigest: written.manifestDigest as Digest, configDigest: written.configDigest as Digest };
  }

  private async plan(): Promise<BuildPlan> {
    const path = join(this.contextDir, posix.normalize(`/${this.data.dockerfile}`));
    const st = await lstat(path).catch(() => null);
    if (st === null || !st.isFile()) {
      throw new BuildError(`no Dockerfile at "${this.data.dockerfile}" in the build context`);
    }
    if (st.size > MAX_DOCKERFILE) {
      throw new BuildError(`the Dockerfile is larger than ${MAX_DOCKERFILE} bytes`);
    }
    const text = await readFile(path, 'utf8');
    const dockerfile = parseDockerfile(text);
    const plan = planBuild(dockerfile, {
      ...(this.data.target !== null ? { target: this.data.target } : {}),
      buildArgs: this.data.buildArgs,
    });
    for (const w of dockerfile.warnings) {
      this.ctx.reporter.log(null, 'system', `warning: line ${w.line}: ${w.message}\n`);
    }
    if (plan.unusedBuildArgs.length > 0) {
      this.ctx.reporter.log(
        null,
        'system',
        `warning: build args not consumed by any stage: ${plan.unusedBuildArgs.join(', ')}\n`,
      );
    }
    return plan;
  }

  private async baseState(stage: PlannedStage, results: Map<number, ImageState>): Promise<ImageState> {
    switch (stage.base.kind) {
      case 'scratch':
        return scratchState();
      case 'stage': {
        const parent = results.get(stage.base.index);
        if (parent === undefined) {
          throw new BuildError(`stage ${stage.base.index} has not been built`, stage.stage.from.startLine);
        }
        return cloneState(parent);
      }
      case 'image': {
        const image = await this.resolveImage(stage.base.ref, stage.stage.from.startLine);
        const state: ImageState = {
          layers: [...image.layers],
          config: structuredClone(image.config),
          cmdSetInStage: false,
        };
        return state;
      }
    }
  }

  private async resolveImage(
    ref: string,
    line: number,
  ): Promise<Awaited<ReturnType<ImageService['resolve']>>> {
    try {
      return await this.engine.images.resolve(ref);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'IMAGE_UNKNOWN' || code === 'NAME_INVALID') {
        throw new BuildError(
          `base image "${ref}" not found in this registry: ${(err as Error).message}`,
          line,
        );
      }
      throw err;
    }
  }

  private async runStage(
    plan: BuildPlan,
    stage: PlannedStage,
    stepRefs: StepRef[],
    results: Map<number, ImageState>,
  ): Promise<ImageState> {
    this.checkAbort();
    const state = await this.baseState(stage, results);
    // ONBUILD triggers of the base image run first, then are not inherited (Docker semantics).
    const triggers = stage.base.kind === 'image' ? (state.config.config?.OnBuild ?? []) : [];
    if (state.config.config) {
      delete state.config.config.OnBuild;
    }
    const scope = createStageScope(plan, envMap(state.config.config?.Env ?? undefined));
    for (const trigger of triggers) {
      const parsed = parseDockerfile(`FROM scratch\n${trigger}\n`).stages[0].instructions;
      for (const instr of parsed) {
        const expanded = expandInstruction(instr, scope);
        scope.apply(expanded);
        this.ctx.reporter.log(null, 'system', `running ONBUILD trigger: ${trigger}\n`);
        await this.runInstruction(state, expanded, null, scope.runEnvironment(), results);
      }
    }
    for (const ref of stepRefs.filter((r) => r.stage.index === stage.index)) {
      this.checkAbort();
      const expanded = expandInstruction(ref.instruction, scope);
      scope.apply(expanded);
      await this.runStep(ref.index, () =>
        this.runInstruction(state, expanded, ref.index, scope.runEnvironment(), results),
      );
    }
    return state;
  }

  private async runStep(index: number, work: () => Promise<number | null>): Promise<void> {
    const step = this.steps[index];
    const started = Date.now();
    step.status = StepStatus.Running;
    step.startedAt = new Date(started).toISOString();
    await this.ctx.reporter.step(step);
    try {
      step.layerSize = await work();
      step.status = StepStatus.Done;
    } catch (err) {
      step.status = this.ctx.signal.aborted ? StepStatus.Cancelled : StepStatus.Failed;
      throw err;
    } finally {
      step.finishedAt = new Date().toISOString();
      step.durationMs = Date.now() - started;
      await this.ctx.reporter.step(step);
    }
  }

  /** Runs one expanded instruction against `state`; returns the new layer's size, or null. */
  private async runInstruction(
    state: ImageState,
    instr: Instruction,
    stepIndex: number | null,
    runEnv: Record<string, string>,
    results: Map<number, ImageState>,
  ): Promise<number | null> {
    if (isMetadataInstruction(instr)) {
      const createdBy = applyMetadata(state, instr);
      addHistory(state, { created: new Date().toISOString(), created_by: createdBy, empty_layer: true });
      return null;
    }
    switch (instr.kind) {
      case 'FROM':
        return null;
      case 'RUN':
        return this.withContainer(state, `RUN ${describeRun(instr, stageShell(state))}`, (fs) =>
          this.run(fs, state, instr, stepIndex, runEnv),
        );
      case 'COPY':
      case 'ADD':
        return this.withContainer(state, `${instr.kind} ${instr.sources.join(' ')} ${instr.dest}`, (fs) =>
          this.copy(fs, state, instr, results),
        );
    }
  }

  /** Mounts a container on the state's layers, runs `work` in it, snapshots the upper dir as a new layer. */
  private async withContainer(
    state: ImageState,
    createdBy: string,
    work: (fs: ContainerFs) => Promise<void>,
  ): Promise<number> {
    const id = `${this.data.buildId.slice(0, 8)}-${randomBytes(6).toString('hex')}`;
    const fs = await this.filesystems.create(id, state.layers);
    this.live.add(fs);
    try {
      await work(fs);
      await this.filesystems.unmount(fs);
      this.checkAbort();
      const layer = await this.filesystems.snapshot(fs, { compression: this.options.compression ?? 'gzip' });
      await this.filesystems.adoptUpper(fs, layer);
      state.layers.push(layer);
      addHistory(state, { created: new Date().toISOString(), created_by: createdBy });
      return layer.size;
    } finally {
      await this.filesystems.remove(fs);
      this.live.delete(fs);
    }
  }

  private async run(
    fs: ContainerFs,
    state: ImageState,
    instr: RunInstruction,
    stepIndex: number | null,
    runEnv: Record<string, string>,
  ): Promise<void> {
    for (const m of instr.mounts) {
      if (m.type !== 'cache' && !(m.type === 'secret' && !m.required)) {
        throw new BuildError(`RUN --mount=type=${m.type} is not supported yet`, instr.startLine);
      }
    }
    const cfg = state.config.config ?? {};
    const args = runArgs(instr, stageShell(state));
    const cacheMounts = await Promise.all(
      instr.mounts
        .filter((m) => m.type === 'cache' && m.target !== undefined)
        .map(async (m) => {
          const source = join(
            this.options.layerCacheDir,
            '..',
            'run-cache',
            sanitizeId(m.id ?? m.target ?? 'default'),
          );
          await mkdir(source, { recursive: true });
          return { source, destination: m.target as string, readonly: m.readOnly };
        }),
    );
    const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    let result;
    try {
      result = await this.options.runtime.run(
        `stratum-${fs.id}`,
        {
          rootfs: fs.merged,
          args,
          env: runEnv,
          cwd: cfg.WorkingDir && cfg.WorkingDir !== '' ? cfg.WorkingDir : '/',
          ...(cfg.User ? { user: cfg.User } : {}),
          network: instr.network === 'host' ? 'host' : 'none',
          mounts: cacheMounts,
          pidsLimit: 4096,
        },
        {
          onStdout: (c) =>
            this.ctx.reporter.log(stepIndex, 'stdout', decoder.stdout.decode(c, { stream: true })),
          onStderr: (c) =>
            this.ctx.reporter.log(stepIndex, 'stderr', decoder.stderr.decode(c, { stream: true })),
          signal: this.ctx.signal,
          timeoutMs: this.options.stepTimeoutMs,
        },
      );
    } catch (err) {
      const reason = (err as { reason?: string }).reason;
      if (reason === 'USER_UNKNOWN' || reason === 'GROUP_UNKNOWN' || reason === 'START_FAILED') {
        throw new BuildError(`RUN: ${(err as Error).message}`, instr.startLine);
      }
      throw err;
    }
    if (result.cancelled) {
      throw new BuildAborted();
    }
    if (result.timedOut) {
      throw new BuildError(`RUN timed out after ${this.options.stepTimeoutMs / 1000}s`, instr.startLine);
    }
    if (result.exitCode !== 0) {
      throw new BuildError(
        `process "${args.join(' ')}" did not complete successfully: exit code: ${result.exitCode ?? result.signal ?? 'unknown'}`,
        instr.startLine,
      );
    }
  }

  private async copy(
    fs: ContainerFs,
    state: ImageState,
    instr: CopyInstruction | AddInstruction,
    results: Map<number, ImageState>,
  ): Promise<void> {
    const cfg = state.config.config ?? {};
    const workdir = cfg.WorkingDir && cfg.WorkingDir !== '' ? cfg.WorkingDir : '/';
    let owner: { uid: number; gid: number } | null = null;
    if (instr.chown !== undefined) {
      try {
        const u = await resolveUser(fs.merged, instr.chown);
        owner = { uid: u.uid, gid: u.gid };
      } catch (err) {
        throw new BuildError(
          `${instr.kind} --chown=${instr.chown}: ${(err as Error).message}`,
          instr.startLine,
        );
      }
    }
    let mode: number | null = null;
    if (instr.chmod !== undefined) {
      if (!/^[0-7]{3,4}$/.test(instr.chmod)) {
        throw new BuildError(
          `${instr.kind} --chmod=${instr.chmod}: expected an octal mode such as 0755`,
          instr.startLine,
        );
      }
      mode = parseInt(instr.chmod, 8);
    }
    // Heredoc sources (COPY <<EOF /dest) are written into a private dir and copied from there.
    let sourceRoot = this.contextDir;
    let sources = [...instr.sources];
    let fromFs: ContainerFs | null = null;
    try {
      if (instr.inlineSources.length > 0) {
        sourceRoot = join(fs.dir, 'inline');
        await mkdir(sourceRoot, { recursive: true });
        for (const s of instr.inlineSources) {
          await writeFile(join(sourceRoot, posix.basename(s.path)), s.data, { mode: 0o644 });
        }
        sources = instr.inlineSources.map((s) => posix.basename(s.path));
        if (instr.sources.length > 0) {
          throw new BuildError(
            `${instr.kind}: mixing heredoc and file sources is not supported`,
            instr.startLine,
          );
        }
      } else if (instr.kind === 'COPY' && instr.from !== undefined) {
        const fromState = await this.fromState(instr.from, results, instr.startLine);
        fromFs = await this.filesystems.create(`${fs.id}-from`, fromState.layers);
        this.live.add(fromFs);
        sourceRoot = fromFs.merged;
      }
      if (instr.kind === 'ADD') {
        const remaining: string[] = [];
        for (const src of sources) {
          if (/^https?:\/\//.test(src)) {
            throw new BuildError('ADD from a URL is not supported yet', instr.startLine);
          }
          const abs = join(sourceRoot, posix.normalize(`/${src}`));
          if (instr.unpack !== false && (await isLocalArchive(abs))) {
            const destDir = containerPath(
              fs.merged,
              posix.isAbsolute(instr.dest) ? instr.dest : posix.join(workdir, instr.dest),
            );
            await mkdir(destDir, { recursive: true });
            await applyLayer(createReadStream(abs), destDir);
          } else {
            remaining.push(src);
          }
        }
        sources = remaining;
      }
      if (sources.length > 0) {
        await copyIntoContainer({
          sourceRoot,
          sources,
          targetRoot: fs.merged,
          dest: instr.dest,
          workdir,
          owner,
          mode,
          line: instr.startLine,
        });
      }
    } finally {
      if (fromFs !== null) {
        await this.filesystems.remove(fromFs);
        this.live.delete(fromFs);
      }
    }
  }

  private async fromState(from: string, results: Map<number, ImageState>, line: number): Promise<ImageState> {
    // A stage by name or index; otherwise an image reference.
    for (const [index, state] of results) {
      if (String(index) === from) {
        return state;
      }
    }
    const byName = this.stageNames.get(from.toLowerCase());
    if (byName !== undefined) {
      const state = results.get(byName);
      if (state !== undefined) {
        return state;
      }
    }
    const image = await this.resolveImage(from, line);
    return { layers: [...image.layers], config: image.config };
  }

  /** Unmounts and removes what a failed or cancelled build left mounted. */
  async cleanup(): Promise<void> {
    for (const fs of [...this.live]) {
      await this.filesystems.remove(fs).catch(() => undefined);
      this.live.delete(fs);
    }
  }
}

function sanitizeId(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100) || 'default';
}

async function isLocalArchive(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  if (st === null || !st.isFile() || st.size < 512) {
    return false;
  }
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(512);
    await fh.read(head, 0, 512, 0);
    if (detectCompression(head) !== 'none') {
      return true;
    }
    return head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    await fh.close();
  }
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

function describeRun(instr: RunInstruction, shell: readonly string[]): string {
  return runArgs(instr, shell).join(' ');
}

function stepName(ref: StepRef): string {
  const name = ref.stage.name !== undefined ? ref.stage.name : `stage-${ref.stage.index}`;
  const text = ref.instruction.original.replace(/\s+/g, ' ').trim();
  return `[${name}] ${text.length > 200 ? `${text.slice(0, 197)}...` : text}`;
}
