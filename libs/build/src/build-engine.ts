import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lchown, lstat, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import {
  checkFileName,
  ConfineError,
  containerPath,
  nameBeneath,
  readFileBeneath,
  resolveInRoot,
} from '@stratum/confine';
import { BuildJobData, Digest, StepRecord, StepStatus } from '@stratum/contracts';
import {
  AddInstruction,
  BuildPlan,
  CopyInstruction,
  createStageScope,
  expandInstruction,
  ExpansionScope,
  Instruction,
  parseDockerfile,
  planBuild,
  PlannedStage,
  RunInstruction,
  WorkdirInstruction,
} from '@stratum/dockerfile';
import { ContainerFilesystems, ContainerFs, ImageService, LayerDescriptor } from '@stratum/images';
import { applyLayer, detectCompression, LayerCache } from '@stratum/layers';
import { HistoryEntry, tryParseReference } from '@stratum/oci';
import { resolveUser, RuncRuntime } from '@stratum/runtime';
import { BlobDigest, BlobStore, RepositoryStore } from '@stratum/storage';
import {
  BuildCacheIndex,
  BuildCacheRecord,
  MemoryBuildCacheIndex,
  stableJson,
  stepCacheKey,
} from './build-cache';
import { BuildContext } from './build-context';
import { BuildError } from './build-errors';
import { BuildReporter } from './build-reporter';
import { copyIntoContainer, matchSources, SourceEntry } from './file-copy';
import { addHistory, cloneState, envMap, ImageState, scratchState } from './image-state';
import {
  applyMetadata,
  commandArgs,
  isMetadataInstruction,
  MetadataInstruction,
  stageShell,
} from './metadata-steps';
import { fetchRemote, isRemoteSource, parseChecksum, remoteFileName } from './remote-source';
import { RunCacheStore } from './run-cache';
import { checkRunMounts, MountedFrom, mountTarget, PreparedRunMounts, prepareRunMounts } from './run-mounts';
import { SecretMasker } from './secret-mask';
import { hashSources } from './source-hash';

/**
 * Pulls an image from another registry into our storage (libs/registry's RemoteImageResolver):
 * that registry's mirrors in order, then the registry itself. When nothing has it, `resolve`
 * throws an error carrying `attempts` (each place tried and why it gave nothing).
 */
export interface RemoteImageSource {
  /** Registry of unqualified names our registry lacks (`docker.io`); null: they mean ours only. */
  readonly defaultRegistry: string | null;
  /**
   * True for an unqualified name in a pull-through mirror's repository (REGISTRY_MIRRORS): it is
   * resolved here, not taken from our registry as is (the mirror may hold a manifest whose blobs
   * were never fetched).
   */
  isPullThrough(reference: string): boolean;
  resolve(reference: string, signal?: AbortSignal): Promise<RemoteImage>;
}

/** What {@link RemoteImageSource.resolve} brought, and from where (said in the build log). */
export interface RemoteImage {
  readonly repository: string;
  readonly manifestDigest: Digest;
  /** With the registry filled in: `docker.io/library/busybox:latest`. */
  readonly reference: string;
  /** `stored`: pulled before, found in `repository` without asking anyone. */
  readonly source: 'stored' | 'mirror' | 'registry';
  /** The mirror's or registry's URL; null when stored. */
  readonly endpoint: string | null;
  /** Places tried first that were down or lacked it. */
  readonly failed: readonly { readonly place: string; readonly error: string }[];
}

export interface BuildEngineOptions {
  readonly blobs: BlobStore;
  readonly repositories: RepositoryStore;
  readonly runtime: RuncRuntime;
  /** Per-build scratch dirs live here (`<jobsDir>/<buildId>`). */
  readonly jobsDir: string;
  /** The host's extracted-layer cache, shared with everything else mounting layers on this host. */
  readonly cache?: LayerCache;
  /** Where the engine makes its own layer cache when none is given. */
  readonly layerCacheDir: string;
  /**
   * Root of `RUN --mount=type=cache` directories, one per hashed id, and nothing else
   * (default: `run-cache` beside `layerCacheDir`).
   */
  readonly runCacheDir?: string;
  /** After each build the cache mount directories are trimmed to this (LRU, unused ones only). Default 10 GiB. */
  readonly runCacheMaxBytes?: number;
  readonly stepTimeoutMs: number;
  /** Memory limit of each RUN step (default 4 GiB): a hog is killed, the worker lives on. */
  readonly stepMemoryBytes?: number;
  /** Bytes one RUN step may write to its layer (default 64 GiB): past it the step is killed. */
  readonly stepDiskBytes?: number;
  /** Process limit of each RUN step (default 4096): a fork bomb is contained. */
  readonly stepPidsLimit?: number;
  /** After each build the layer cache is trimmed to this (LRU, unused layers only). Default 50 GiB. */
  readonly layerCacheMaxBytes?: number;
  /** Allow `RUN --network=host` (default false: the host network reaches the worker's Redis). */
  readonly allowHostNetwork?: boolean;
  /** Allow the sandboxed network (default true); off, a step without a network of its own gets `none`. */
  readonly allowSandboxNetwork?: boolean;
  /** The network of a RUN step that neither the build nor the Dockerfile chooses. Default `sandbox`. */
  readonly stepNetworkDefault?: 'sandbox' | 'none';
  /** Largest build context, unpacked (MAX_CONTEXT_BYTES); unlimited when unset. */
  readonly maxContextBytes?: number;
  /** What the local archives of one ADD may unpack to (MAX_ADD_UNPACKED_BYTES); unlimited when unset. */
  readonly maxAddUnpackedBytes?: number;
  /** Most entries of a build context (MAX_CONTEXT_ENTRIES); unlimited when unset. */
  readonly maxContextEntries?: number;
  readonly compression?: 'gzip' | 'zstd';
  /**
   * The step cache index. Share one (Redis) between worker hosts so they reuse each other's
   * layers; default: an in-process index, which only this engine sees.
   */
  readonly cacheIndex?: BuildCacheIndex;
  /**
   * Fetches images that name another registry (`FROM registry.example.com/team/base:1`), and
   * unqualified ones our registry lacks (`FROM alpine`: its default registry), into our storage.
   * Without it such a FROM fails with a clear error and unqualified names mean our registry only.
   */
  readonly remoteImages?: RemoteImageSource;
}

export interface BuildRunContext {
  readonly signal: AbortSignal;
  readonly reporter: BuildReporter;
  /**
   * Build secrets by id (`RUN --mount=type=secret`): materialised on a tmpfs per step and
   * masked in the log; never part of a key, a layer or the image.
   */
  readonly secrets?: ReadonlyMap<string, Buffer>;
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

/** A step with its cache key computed, ready to be replayed from the cache or run. */
interface PreparedStep {
  readonly key: string;
  /** Config change, applied on a hit and on a miss alike (it is cheap and deterministic). */
  readonly metadata: MetadataInstruction | null;
  /** History text of a filesystem step (metadata steps get theirs from applying the change). */
  readonly createdBy?: string;
  /** The filesystem work on a miss: returns the new layer, or null when nothing changed. */
  readonly run?: () => Promise<LayerDescriptor | null>;
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
 * Independent stages run in parallel. Every step has a cache key (see {@link stepCacheKey});
 * a step whose key is in the {@link BuildCacheIndex} (and whose layer is still in the blob
 * store) is replayed without running.
 */
export class BuildEngine {
  readonly images: ImageService;
  readonly cache: LayerCache;
  readonly cacheIndex: BuildCacheIndex;
  /** `RUN --mount=type=cache` directories of this host. */
  readonly runCache: RunCacheStore;

  constructor(private readonly options: BuildEngineOptions) {
    this.images = new ImageService(options.blobs, options.repositories);
    this.cache = options.cache ?? new LayerCache(options.layerCacheDir);
    this.cacheIndex = options.cacheIndex ?? new MemoryBuildCacheIndex();
    this.runCache = new RunCacheStore(
      options.runCacheDir ?? join(dirname(options.layerCacheDir), 'run-cache'),
    );
  }

  async build(data: BuildJobData, ctx: BuildRunContext): Promise<BuildOutcome> {
    // A job payload is data from Redis: its build id becomes a directory name only once checked.
    const jobDir = nameBeneath(this.options.jobsDir, data.buildId, 'build id');
    await rm(jobDir, { recursive: true, force: true });
    const contextDir = join(jobDir, 'context');
    await mkdir(contextDir, { recursive: true });
    const filesystems = new ContainerFilesystems({
      blobs: this.options.blobs,
      images: this.images,
      cache: this.cache,
      root: join(jobDir, 'containers'),
    });
    // Extracted only when a step needs its files (see BuildContext).
    const context = new BuildContext(
      this.options.blobs,
      data.contextDigest,
      contextDir,
      data.dockerfile,
      (t) => ctx.reporter.log(null, 'system', t),
      this.options.maxContextBytes,
      this.options.maxContextEntries,
    );
    const run = new BuildRun(this, this.options, data, ctx, jobDir, context, filesystems);
    try {
      return await run.execute();
    } finally {
      // Never let cleanup replace the build's own outcome (a user's BuildError must stay one).
      await run
        .cleanup()
        .catch((err: unknown) => ctx.reporter.log(null, 'system', `cleanup: ${String(err)}\n`));
      await rm(jobDir, { recursive: true, force: true }).catch((err: unknown) =>
        ctx.reporter.log(null, 'system', `cleanup: ${String(err)}\n`),
      );
      // Layers no running container uses, least recently used first, beyond the host's budget.
      await this.cache
        .evict({ maxBytes: this.options.layerCacheMaxBytes ?? 50 * 1024 * 1024 * 1024 })
        .catch((err: unknown) => ctx.reporter.log(null, 'system', `layer cache eviction: ${String(err)}\n`));
      await this.runCache
        .trim(this.options.runCacheMaxBytes ?? 10 * 1024 * 1024 * 1024)
        .catch((err: unknown) => ctx.reporter.log(null, 'system', `cache mount trim: ${String(err)}\n`));
    }
  }
}

/** One build's execution state. */
class BuildRun {
  private readonly steps: StepRecord[] = [];
  private readonly live = new Set<ContainerFs>();
  private readonly stageNames = new Map<string, number>();
  /** `SOURCE_DATE_EPOCH` build arg (seconds), or null. */
  private readonly epoch: number | null;

  constructor(
    private readonly engine: BuildEngine,
    private readonly options: BuildEngineOptions,
    private readonly data: BuildJobData,
    private readonly ctx: BuildRunContext,
    private readonly jobDir: string,
    private readonly context: BuildContext,
    private readonly filesystems: ContainerFilesystems,
  ) {
    this.epoch = sourceDateEpoch(data.buildArgs);
  }

  private checkAbort(): void {
    if (this.ctx.signal.aborted) {
      throw new BuildAborted();
    }
  }

  /** Time stamp of new history entries and of the image: now, or SOURCE_DATE_EPOCH when given. */
  private now(): string {
    return (this.epoch === null ? new Date() : new Date(this.epoch * 1000)).toISOString();
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
    final.config.created = this.epoch !== null ? this.now() : (latestHistoryTime(final) ?? this.now());
    const written = await this.engine.images.write({
      config: final.config,
      layers: final.layers,
      tags: this.data.tags,
    });
    const cached = this.steps.filter((s) => s.status === StepStatus.Cached).length;
    this.ctx.reporter.log(
      null,
      'system',
      `${cached} of ${this.steps.length} steps cached; writing image ${written.manifestDigest}${this.data.tags.length ? ` as ${this.data.tags.join(', ')}` : ''}\n`,
    );
    return { imageDigest: written.manifestDigest as Digest, configDigest: written.configDigest as Digest };
  }

  private get contextDir(): string {
    return this.context.dir;
  }

  /** The Dockerfile's text: memoized per context blob, else read from the extracted context. */
  private async dockerfileText(): Promise<string> {
    // v2: a v1 memo may hold a file read through a symlink out of the context (issue 13).
    const memoKey = `dockerfile:${stableJson({ v: 2, ctx: this.data.contextDigest, path: this.data.dockerfile })}`;
    const index = this.engine.cacheIndex;
    const memo = (await index.getMemo?.(memoKey)) ?? null;
    if (memo !== null) {
      return memo;
    }
    await this.context.materialize();
    // Links inside the context are followed (as BuildKit does); one leading out of it (a
    // directory linked to `/etc` of this host) is an error that names only the user's path.
    const text = await readFileBeneath(this.contextDir, this.data.dockerfile, MAX_DOCKERFILE, {
      symlinks: 'refuse-escape',
      what: 'Dockerfile path',
    }).catch((err: unknown) => {
      throw err instanceof ConfineError ? new BuildError(err.message) : err;
    });
    if (text === null) {
      throw new BuildError(`no Dockerfile at "${this.data.dockerfile}" in the build context`);
    }
    await index.putMemo?.(memoKey, text);
    return text;
  }

  private async plan(): Promise<BuildPlan> {
    const text = await this.dockerfileText();
    const dockerfile = parseDockerfile(text);
    const plan = planBuild(dockerfile, {
      ...(this.data.target !== null ? { target: this.data.target } : {}),
      buildArgs: this.data.buildArgs,
    });
    for (const w of dockerfile.warnings) {
      this.ctx.reporter.log(null, 'system', `warning: line ${w.line}: ${w.message}\n`);
    }
    const unused = plan.unusedBuildArgs.filter((a) => a !== 'SOURCE_DATE_EPOCH');
    if (unused.length > 0) {
      this.ctx.reporter.log(
        null,
        'system',
        `warning: build args not consumed by any stage: ${unused.join(', ')}\n`,
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
        return {
          layers: [...image.layers],
          config: structuredClone(image.config),
          cmdSetInStage: false,
          cacheKey: `image:${image.manifestDigest}`,
        };
      }
    }
  }

  /**
   * A FROM (or COPY --from) image, looked up as Docker does: an unqualified name in our registry
   * first, then pulled from the default registry (its mirrors first); a qualified one pulled from
   * its registry (its mirrors first), unless a pull left it with us before. The log says where it
   * came from; the error when nothing has it names every place tried and why.
   */
  private async resolveImage(
    ref: string,
    line: number,
  ): Promise<Awaited<ReturnType<ImageService['resolve']>>> {
    const parsed = tryParseReference(ref);
    const remote = this.options.remoteImages;
    let localMiss: string | null = null;
    // A pull-through mirror's repository is resolved through its upstream, below.
    const pullThrough = parsed !== null && parsed.registry === null && remote?.isPullThrough(ref) === true;
    if (!pullThrough && (parsed === null || parsed.registry === null)) {
      try {
        const image = await this.engine.images.resolve(ref);
        this.ctx.reporter.log(null, 'system', `FROM ${ref}: found in this registry\n`);
        return image;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (!isMissingImage(code)) {
          throw err;
        }
        if (parsed === null || remote === undefined || remote.defaultRegistry === null) {
          throw new BuildError(
            `base image "${ref}" not found in this registry: ${(err as Error).message}`,
            line,
          );
        }
        localMiss = (err as Error).message;
      }
    } else if (remote === undefined) {
      throw new BuildError(`base image "${ref}" is in another registry and this worker cannot pull`, line);
    }
    let fetched: RemoteImage;
    try {
      fetched = await remote.resolve(ref, this.ctx.signal);
    } catch (err) {
      const attempts = (err as { attempts?: unknown }).attempts;
      if (isAttemptList(attempts)) {
        const places = [
          ...(localMiss !== null ? [`this registry: ${localMiss}`] : []),
          ...attempts.map((a) => `${a.place}: ${a.error}`),
        ];
        const qualified = (err as { reference?: string }).reference;
        throw new BuildError(
          `base image "${ref}"${qualified !== undefined ? ` (${qualified})` : ''} not found; tried ${places.join('; ')}`,
          line,
        );
      }
      if (isMissingImage((err as { code?: string }).code)) {
        throw new BuildError(`base image "${ref}" not found: ${(err as Error).message}`, line);
      }
      throw err;
    }
    for (const f of fetched.failed) {
      this.ctx.reporter.log(null, 'system', `FROM ${ref}: ${f.place} failed (${f.error}); trying the next\n`);
    }
    this.ctx.reporter.log(
      null,
      'system',
      fetched.source === 'stored'
        ? `FROM ${ref}: found in this registry as ${fetched.repository} (pulled before: ${fetched.reference})\n`
        : `FROM ${ref}: resolved from ${fetched.source} ${fetched.endpoint ?? ''} (${fetched.reference})\n`,
    );
    return await this.engine.images.load(fetched.repository, fetched.manifestDigest);
  }

  private async runStage(
    plan: BuildPlan,
    stage: PlannedStage,
    stepRefs: StepRef[],
    results: Map<number, ImageState>,
  ): Promise<ImageState> {
    this.checkAbort();
    const state = await this.baseState(stage, results);
    if (stage.base.kind !== 'stage') {
      ensureDefaultPath(state);
    }
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
        await this.runStep(null, state, expanded, stepEnvironment(expanded, scope), results);
      }
    }
    for (const ref of stepRefs.filter((r) => r.stage.index === stage.index)) {
      this.checkAbort();
      const expanded = expandInstruction(ref.instruction, scope);
      scope.apply(expanded);
      await this.runStep(ref.index, state, expanded, stepEnvironment(expanded, scope), results);
    }
    return state;
  }

  /**
   * One step: compute its key, replay it from the cache when the index has it (status
   * `cached`, nothing runs), otherwise run it (`running` -> `done`) and record it.
   */
  private async runStep(
    index: number | null,
    state: ImageState,
    instr: Instruction,
    runEnv: Record<string, string>,
    results: Map<number, ImageState>,
  ): Promise<void> {
    if (instr.kind === 'FROM') {
      return;
    }
    const step = index === null ? null : this.steps[index];
    const started = Date.now();
    const report = async (status: StepStatus, layerSize: number | null = null): Promise<void> => {
      if (step === null) {
        return;
      }
      step.status = status;
      step.startedAt ??= new Date(started).toISOString();
      if (status !== StepStatus.Running) {
        step.finishedAt = new Date().toISOString();
        step.durationMs = Date.now() - started;
        step.layerSize = layerSize;
      }
      await this.ctx.reporter.step(step);
    };
    try {
      const prepared = await this.prepare(index, state, instr, runEnv, results);
      const hit = this.data.noCache ? null : await this.lookup(prepared.key);
      const createdBy =
        prepared.metadata !== null ? applyMetadata(state, prepared.metadata) : prepared.createdBy;
      if (hit !== null) {
        if (hit.layer !== null) {
          state.layers.push(hit.layer);
        }
        addHistory(state, hit.history);
        state.cacheKey = prepared.key;
        await report(StepStatus.Cached, hit.layer?.size ?? null);
        return;
      }
      await report(StepStatus.Running);
      const layer = prepared.run !== undefined ? await prepared.run() : null;
      const history: HistoryEntry = {
        created: this.now(),
        created_by: createdBy ?? instr.original,
        ...(layer === null ? { empty_layer: true } : {}),
      };
      if (layer !== null) {
        state.layers.push(layer);
      }
      addHistory(state, history);
      state.cacheKey = prepared.key;
      await this.engine.cacheIndex.put(prepared.key, {
        version: 1,
        layer,
        history,
        recordedAt: new Date().toISOString(),
      });
      await report(StepStatus.Done, layer?.size ?? null);
    } catch (err) {
      await report(this.ctx.signal.aborted ? StepStatus.Cancelled : StepStatus.Failed).catch(() => undefined);
      // A path of this step that cannot be confined (a symlink loop, `COPY <<..`): the user's
      // error, reported with the step's line like every other.
      throw err instanceof ConfineError ? new BuildError(err.message, instr.startLine) : err;
    }
  }

  /** The index's record for `key`, trusted only when its layer is still in the blob store. */
  private async lookup(key: string): Promise<BuildCacheRecord | null> {
    const rec = await this.engine.cacheIndex.get(key);
    if (rec === null) {
      return null;
    }
    if (rec.layer !== null && !(await this.options.blobs.has(rec.layer.digest as BlobDigest))) {
      await this.engine.cacheIndex.delete(key);
      return null;
    }
    return rec;
  }

  /** Cache key and work of one expanded instruction. */
  private async prepare(
    stepIndex: number | null,
    state: ImageState,
    instr: Exclude<Instruction, { kind: 'FROM' }>,
    runEnv: Record<string, string>,
    results: Map<number, ImageState>,
  ): Promise<PreparedStep> {
    const parent = state.cacheKey ?? 'scratch';
    const instruction = canonicalInstruction(instr);
    const cfg = state.config.config ?? {};
    const workdir = cfg.WorkingDir && cfg.WorkingDir !== '' ? cfg.WorkingDir : '/';
    const epoch = this.epoch;
    if (instr.kind === 'WORKDIR') {
      const key = stepCacheKey({ parent, instruction, inputs: { workdir, user: cfg.User ?? '', epoch } });
      return { key, metadata: instr, run: () => this.workdir(state, instr) };
    }
    if (isMetadataInstruction(instr)) {
      // ARG changes nothing in the image but the RUN environment; its value keys it all the same.
      const inputs = instr.kind === 'ARG' ? { env: runEnv, epoch } : { epoch };
      return { key: stepCacheKey({ parent, instruction, inputs }), metadata: instr };
    }
    switch (instr.kind) {
      case 'RUN': {
        if (instr.network === 'host' && this.options.allowHostNetwork !== true) {
          throw new BuildError(
            'RUN --network=host is not allowed on this service (an operator can enable it with ALLOW_HOST_NETWORK=true)',
            instr.startLine,
          );
        }
        // A missing required secret fails here, before the step is looked up or run.
        checkRunMounts(instr, this.ctx.secrets ?? new Map<string, Buffer>());
        const network = this.stepNetwork(instr);
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
            binds: await this.bindInputs(instr, workdir, results),
            epoch,
          },
        });
        return {
          key,
          metadata: null,
          createdBy: `RUN ${args.join(' ')}`,
          run: () =>
            this.withContainer(state, (fs) =>
              this.run(fs, state, instr, args, runEnv, stepIndex, results, network),
            ),
        };
      }
      case 'COPY':
      case 'ADD':
        return this.prepareCopy(state, instr, parent, instruction, workdir, results);
    }
  }

  private async prepareCopy(
    state: ImageState,
    instr: CopyInstruction | AddInstruction,
    parent: string,
    instruction: unknown,
    workdir: string,
    results: Map<number, ImageState>,
  ): Promise<PreparedStep> {
    if (instr.exclude.length > 0) {
      throw new BuildError(`${instr.kind} --exclude is not supported yet`, instr.startLine);
    }
    if (instr.kind === 'COPY' && instr.parents) {
      throw new BuildError('COPY --parents is not supported yet', instr.startLine);
    }
    if (instr.inlineSources.length > 0 && instr.sources.length > 0) {
      throw new BuildError(
        `${instr.kind}: mixing heredoc and file sources is not supported`,
        instr.startLine,
      );
    }
    const createdBy = `${instr.kind} ${[...instr.sources, ...instr.inlineSources.map((s) => s.path)].join(' ')} ${instr.dest}`;
    const epoch = this.epoch;
    const base = { workdir, epoch };
    // COPY --from: the source stage's (or image's) key stands for every file it could read.
    if (instr.kind === 'COPY' && instr.from !== undefined) {
      const fromState = await this.fromState(instr.from, results, instr.startLine);
      const key = stepCacheKey({ parent, instruction, inputs: { ...base, from: fromState.cacheKey } });
      return {
        key,
        metadata: null,
        createdBy,
        run: () =>
          this.withContainer(state, async (fs) => {
            const fromFs = await this.filesystems.create(`${fs.id}-from`, fromState.layers);
            this.live.add(fromFs);
            try {
              const sources = await matchSources(fromFs.merged, instr.sources, instr.startLine, instr.kind);
              await this.copyInto(fs, instr, fromFs.merged, sources, workdir);
            } finally {
              await this.filesystems.remove(fromFs);
              this.live.delete(fromFs);
            }
          }),
      };
    }
    if (instr.inlineSources.length > 0) {
      // Heredoc sources: their text is part of the instruction, hence of the key.
      const key = stepCacheKey({ parent, instruction, inputs: base });
      return {
        key,
        metadata: null,
        createdBy,
        run: () =>
          this.withContainer(state, async (fs) => {
            const root = join(fs.dir, 'inline');
            await mkdir(root, { recursive: true });
            for (const s of instr.inlineSources) {
              // `COPY <<..` must not write over the container's own dir: one file name or an error.
              const name = checkFileName(posix.basename(s.path), 'heredoc name');
              await writeFile(join(root, name), s.data, { mode: 0o644 });
            }
            const sources = await matchSources(
              root,
              instr.inlineSources.map((s) => posix.basename(s.path)),
              instr.startLine,
              instr.kind,
            );
            await this.copyInto(fs, instr, root, sources, workdir);
          }),
      };
    }
    // Sources from the context (and, for ADD, URLs): keyed by the content of what is read.
    const remote: { url: string; checksum?: string }[] = [];
    const local: string[] = [];
    for (const src of instr.sources) {
      if (instr.kind === 'ADD' && isRemoteSource(src)) {
        remote.push({
          url: src,
          ...(instr.checksum !== undefined
            ? { checksum: parseChecksum(instr.checksum, instr.startLine) }
            : {}),
        });
      } else {
        local.push(src);
      }
    }
    if (instr.kind === 'ADD' && instr.checksum !== undefined && local.length > 0) {
      throw new BuildError('ADD --checksum can only be used with HTTP(S) sources', instr.startLine);
    }
    if (remote.length > 0 && remote.length + local.length > 1 && !instr.dest.endsWith('/')) {
      throw new BuildError(
        'When using ADD with more than one source file, the destination must be a directory and end with a /',
        instr.startLine,
      );
    }
    // What the sources hash to depends only on the context blob, its ignore file (chosen by
    // the Dockerfile's path) and the patterns: memoized, a cached step needs no extraction.
    const memoKey = `sources:${createHash('sha256')
      .update(
        stableJson({
          v: 1,
          ctx: this.data.contextDigest,
          dockerfile: this.data.dockerfile,
          kind: instr.kind,
          local,
        }),
      )
      .digest('hex')}`;
    let sources: SourceEntry[] | null = null;
    const localSources = async (): Promise<SourceEntry[]> => {
      if (sources === null) {
        if (local.length > 0) {
          await this.context.materialize();
        }
        sources = await matchSources(this.contextDir, local, instr.startLine, instr.kind);
      }
      return sources;
    };
    let sourcesDigest =
      local.length === 0 ? null : ((await this.engine.cacheIndex.getMemo?.(memoKey)) ?? null);
    if (sourcesDigest === null) {
      sourcesDigest = await hashSources(await localSources());
      if (local.length > 0) {
        await this.engine.cacheIndex.putMemo?.(memoKey, sourcesDigest);
      }
    }
    const remoteInputs: { url: string; digest: string }[] = [];
    const fetched: SourceEntry[] = [];
    const fetchAll = async (): Promise<void> => {
      for (const r of remote) {
        const f = await fetchRemote(r.url, join(this.jobDir, 'remote'), {
          ...(r.checksum !== undefined ? { checksum: r.checksum } : {}),
          line: instr.startLine,
          signal: this.ctx.signal,
        });
        fetched.push({ rel: posix.basename(f.rel), host: f.path, stat: await lstat(f.path) });
        remoteInputs.push({ url: r.url, digest: f.digest });
      }
    };
    if (remote.every((r) => r.checksum !== undefined)) {
      // With --checksum the content is known without downloading: a hit needs no network.
      for (const r of remote) {
        remoteFileName(r.url, instr.startLine);
        remoteInputs.push({ url: r.url, digest: r.checksum as string });
      }
    } else {
      await fetchAll();
    }
    const key = stepCacheKey({
      parent,
      instruction,
      inputs: { ...base, sources: sourcesDigest, remote: remoteInputs },
    });
    return {
      key,
      metadata: null,
      createdBy,
      run: () =>
        this.withContainer(state, async (fs) => {
          if (remote.length > 0 && fetched.length === 0) {
            await fetchAll();
          }
          const matched = await localSources();
          let toCopy = matched;
          if (instr.kind === 'ADD' && instr.unpack !== false) {
            toCopy = [];
            const limit = this.options.maxAddUnpackedBytes;
            let left = limit;
            for (const s of matched) {
              if (await isLocalArchive(s.host)) {
                const dest = posix.isAbsolute(instr.dest) ? instr.dest : posix.join(workdir, instr.dest);
                const destDir = containerPath(fs.merged, await resolveInRoot(fs.merged, dest));
                await mkdir(destDir, { recursive: true });
                // A local archive from the build context is a plain archive, as Docker's ADD
                // untars it: `.wh.*` names are files, not whiteouts; no device nodes.
                const applied = await applyLayer(createReadStream(s.host), destDir, {
                  devices: 'reject',
                  kind: 'plain',
                  ...(left !== undefined ? { maxBytes: left } : {}),
                }).catch((err: unknown) => {
                  if ((err as { cause?: { code?: unknown } }).cause?.code === 'TAR_TOO_LARGE') {
                    throw new BuildError(
                      `ADD ${s.rel}: the archive unpacks to more than MAX_ADD_UNPACKED_BYTES (${limit} bytes${matched.length > 1 ? ' for all archives of this ADD' : ''})`,
                      instr.startLine,
                    );
                  }
                  throw err;
                });
                if (left !== undefined) {
                  left = Math.max(0, left - applied.bytes);
                }
              } else {
                toCopy.push(s);
              }
            }
          }
          if (toCopy.length > 0) {
            await this.copyInto(fs, instr, this.contextDir, toCopy, workdir);
          }
          for (const f of fetched) {
            await this.copyInto(fs, instr, posix.dirname(f.host), [f], workdir);
          }
        }),
    };
  }

  private async copyInto(
    fs: ContainerFs,
    instr: CopyInstruction | AddInstruction,
    sourceRoot: string,
    sources: SourceEntry[],
    workdir: string,
  ): Promise<void> {
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
    await copyIntoContainer({
      sourceRoot,
      sources,
      targetRoot: fs.merged,
      dest: instr.dest,
      workdir,
      owner,
      mode,
      line: instr.startLine,
      kind: instr.kind,
    });
  }

  /**
   * WORKDIR creates its directory like BuildKit (mkdir -p, 0755, owned by the current USER):
   * a layer only when it did not exist yet.
   */
  private async workdir(state: ImageState, instr: WorkdirInstruction): Promise<LayerDescriptor | null> {
    const cfg = state.config.config ?? {};
    const dir = cfg.WorkingDir && cfg.WorkingDir !== '' ? cfg.WorkingDir : '/';
    if (dir === '/') {
      return null;
    }
    return this.withContainer(state, async (fs) => {
      const resolved = await resolveInRoot(fs.merged, dir);
      const st = await lstat(containerPath(fs.merged, resolved)).catch(() => null);
      if (st?.isDirectory() === true) {
        return false;
      }
      let owner: { uid: number; gid: number } | null = null;
      if (cfg.User !== undefined && cfg.User !== '') {
        try {
          const u = await resolveUser(fs.merged, cfg.User);
          owner = { uid: u.uid, gid: u.gid };
        } catch (err) {
          throw new BuildError(
            `WORKDIR ${dir}: user ${cfg.User}: ${(err as Error).message}`,
            instr.startLine,
          );
        }
      }
      let cur = '/';
      for (const part of resolved.split('/').filter(Boolean)) {
        cur = posix.join(cur, part);
        const host = containerPath(fs.merged, cur);
        const pst = await lstat(host).catch(() => null);
        if (pst === null) {
          await mkdir(host);
          await chmod(host, 0o755);
          if (owner !== null) {
            await lchown(host, owner.uid, owner.gid);
          }
        } else if (!pst.isDirectory()) {
          throw new BuildError(`WORKDIR ${dir}: ${cur} is not a directory`, instr.startLine);
        }
      }
      return true;
    });
  }

  /**
   * Mounts a container on the state's layers, runs `work` in it and snapshots the upper dir
   * as a new layer. `work` returning false means it changed nothing: no layer (null).
   */
  private async withContainer(
    state: ImageState,
    work: (fs: ContainerFs) => Promise<boolean | void>,
  ): Promise<LayerDescriptor | null> {
    const id = `${this.data.buildId.slice(0, 8)}-${randomBytes(6).toString('hex')}`;
    const fs = await this.filesystems.create(id, state.layers, { volatile: true });
    this.live.add(fs);
    try {
      const changed = await work(fs);
      await this.filesystems.unmountPruned(fs);
      this.checkAbort();
      if (changed === false) {
        return null;
      }
      const layer = await this.filesystems.snapshot(fs, {
        compression: this.options.compression ?? 'gzip',
        ...(this.epoch !== null ? { sourceDateEpoch: this.epoch } : {}),
      });
      await this.filesystems.adoptUpper(fs, layer);
      return layer;
    } finally {
      await this.filesystems.remove(fs);
      this.live.delete(fs);
    }
  }

  /**
   * `RUN --network=none|host` for its step; `default` (or nothing): the build's `network`,
   * else the operator's default. With the sandbox turned off, only a build that asked for it
   * by name fails; the others get `none`.
   */
  private stepNetwork(instr: RunInstruction): 'sandbox' | 'none' | 'host' {
    if (instr.network === 'host' || instr.network === 'none') {
      return instr.network;
    }
    const wanted = this.data.network ?? this.options.stepNetworkDefault ?? 'sandbox';
    if (wanted === 'sandbox' && this.options.allowSandboxNetwork === false) {
      if (this.data.network === 'sandbox') {
        throw new BuildError(
          'network=sandbox is turned off on this service (ALLOW_SANDBOX_NETWORK=false); build with network=none',
          instr.startLine,
        );
      }
      return 'none';
    }
    return wanted;
  }

  private async run(
    fs: ContainerFs,
    state: ImageState,
    instr: RunInstruction,
    args: string[],
    runEnv: Record<string, string>,
    stepIndex: number | null,
    results: Map<number, ImageState>,
    network: 'sandbox' | 'none' | 'host',
  ): Promise<void> {
    const cfg = state.config.config ?? {};
    const workdir = cfg.WorkingDir && cfg.WorkingDir !== '' ? cfg.WorkingDir : '/';
    const secrets = this.ctx.secrets ?? new Map<string, Buffer>();
    const prepared = await prepareRunMounts(instr, fs.merged, workdir, {
      jobDir: this.jobDir,
      contextDir: this.contextDir,
      materializeContext: () => this.context.materialize(),
      cacheStore: this.engine.runCache,
      openFrom: (from, line) => this.openFrom(fs, from, line, results),
      secrets,
      signal: this.ctx.signal,
      log: (t) => this.ctx.reporter.log(null, 'system', t),
    });
    try {
      await this.runProcess(
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
  private async runProcess(
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
    const disk = watchDiskUse(fs.upper, this.options.stepDiskBytes ?? DEFAULT_STEP_DISK_BYTES);
    let result;
    try {
      result = await this.options.runtime.run(
        `stratum-${fs.id}`,
        {
          rootfs: fs.merged,
          args,
          env,
          cwd: workdir,
          ...(user ? { user } : {}),
          network,
          mounts: prepared.mounts,
          pidsLimit: this.options.stepPidsLimit ?? 4096,
          memoryBytes: this.options.stepMemoryBytes ?? 4 * 1024 * 1024 * 1024,
        },
        {
          onStdout: (c) =>
            this.ctx.reporter.log(
              stepIndex,
              'stdout',
              masker.stdout.push(decoder.stdout.decode(c, { stream: true })),
            ),
          onStderr: (c) =>
            this.ctx.reporter.log(
              stepIndex,
              'stderr',
              masker.stderr.push(decoder.stderr.decode(c, { stream: true })),
            ),
          signal: AbortSignal.any([this.ctx.signal, disk.signal]),
          timeoutMs: this.options.stepTimeoutMs,
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
        this.ctx.reporter.log(stepIndex, stream, masker[stream].push(rest) + masker[stream].flush());
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
      throw new BuildError(`RUN timed out after ${this.options.stepTimeoutMs / 1000}s`, instr.startLine);
    }
    if (result.exitCode !== 0) {
      const oom =
        result.oomKilled === true
          ? ` (killed: out of memory, the step's limit is ${this.options.stepMemoryBytes ?? 4 * 1024 * 1024 * 1024} bytes)`
          : '';
      const offline = network === 'none' ? ' (the step ran with network=none: no network but loopback)' : '';
      throw new BuildError(
        `process "${args.join(' ')}" did not complete successfully: exit code: ${result.exitCode ?? result.signal ?? 'unknown'}${oom}${offline}`,
        instr.startLine,
      );
    }
  }

  /**
   * Cache key input of a RUN's bind mounts: the digest of each bound context tree (memoized
   * per context blob, as COPY's sources), or the key of the stage/image it comes from.
   */
  private async bindInputs(
    instr: RunInstruction,
    workdir: string,
    results: Map<number, ImageState>,
  ): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const m of instr.mounts) {
      if (m.type !== 'bind') {
        continue;
      }
      const target = mountTarget(m, workdir);
      const source = m.source ?? '.';
      if (m.from !== undefined) {
        const from = await this.fromState(m.from, results, instr.startLine);
        out.push({ target, from: from.cacheKey, source });
        continue;
      }
      const memoKey = `bind:${createHash('sha256')
        .update(stableJson({ v: 1, ctx: this.data.contextDigest, dockerfile: this.data.dockerfile, source }))
        .digest('hex')}`;
      let digest = (await this.engine.cacheIndex.getMemo?.(memoKey)) ?? null;
      if (digest === null) {
        await this.context.materialize();
        let rel: string;
        try {
          rel = await resolveInRoot(this.contextDir, source, {
            symlinks: 'refuse-escape',
            what: 'bind source',
          });
        } catch (err) {
          throw err instanceof ConfineError
            ? new BuildError(`RUN --mount=${m.raw}: ${err.message}`, instr.startLine)
            : err;
        }
        const host = containerPath(this.contextDir, rel);
        const st = await lstat(host).catch(() => null);
        if (st === null) {
          throw new BuildError(
            `RUN --mount=${m.raw}: source "${source}" not found in the build context`,
            instr.startLine,
          );
        }
        digest = await hashSources([{ rel: '.', host, stat: st }]);
        await this.engine.cacheIndex.putMemo?.(memoKey, digest);
      }
      out.push({ target, source, digest });
    }
    return out;
  }

  /** A `from=` of a RUN mount, mounted (throw-away upper) for the step's duration. */
  private async openFrom(
    fs: ContainerFs,
    from: string,
    line: number,
    results: Map<number, ImageState>,
  ): Promise<MountedFrom> {
    const state = await this.fromState(from, results, line);
    const fromFs = await this.filesystems.create(
      `${fs.id}-m${randomBytes(3).toString('hex')}`,
      state.layers,
      {
        volatile: true,
      },
    );
    this.live.add(fromFs);
    return {
      root: fromFs.merged,
      release: async () => {
        await this.filesystems.remove(fromFs);
        this.live.delete(fromFs);
      },
    };
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
    return { layers: [...image.layers], config: image.config, cacheKey: `image:${image.manifestDigest}` };
  }

  /** Unmounts and removes what a failed or cancelled build left mounted. */
  async cleanup(): Promise<void> {
    for (const fs of [...this.live]) {
      await this.filesystems.remove(fs).catch(() => undefined);
      this.live.delete(fs);
    }
  }
}

/** Linux's default PATH, as BuildKit's system.DefaultPathEnv. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * BuildKit makes sure every stage's config has a PATH (dockerfile2llb: "make sure that PATH
 * is always set"), so RUN finds binaries and the image carries it, even FROM scratch.
 */
function ensureDefaultPath(state: ImageState): void {
  const cfg = state.config.config ?? {};
  if (!(cfg.Env ?? []).some((e) => e.startsWith('PATH='))) {
    state.config.config = { ...cfg, Env: [...(cfg.Env ?? []), `PATH=${DEFAULT_PATH}`] };
  }
}

/** `SOURCE_DATE_EPOCH` from the build args (BuildKit reads it there too), checked. */
function sourceDateEpoch(buildArgs: Record<string, string>): number | null {
  const v = buildArgs.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') {
    return null;
  }
  if (!/^\d{1,12}$/.test(v)) {
    throw new BuildError(`SOURCE_DATE_EPOCH must be a number of seconds since 1970, got "${v}"`);
  }
  return Number(v);
}

/** The newest `created` of the image's history (what BuildKit dates an image by), or null. */
function latestHistoryTime(state: ImageState): string | null {
  let best: number | null = null;
  for (const h of state.config.history ?? []) {
    const t = h.created === undefined ? NaN : Date.parse(h.created);
    if (!Number.isNaN(t) && (best === null || t > best)) {
      best = t;
    }
  }
  return best === null ? null : new Date(best).toISOString();
}

/** The `attempts` a {@link RemoteImageSource} error carries: each place tried and why it failed. */
function isAttemptList(value: unknown): value is readonly { place: string; error: string }[] {
  return Array.isArray(value) && value.every((a) => typeof (a as { place?: unknown }).place === 'string');
}

/** Error codes meaning "no such image" (a name nothing holds, or one that cannot be a name). */
function isMissingImage(code: string | undefined): boolean {
  return (
    code === 'IMAGE_UNKNOWN' ||
    code === 'NAME_INVALID' ||
    code === 'MANIFEST_UNKNOWN' ||
    code === 'NAME_UNKNOWN'
  );
}

/** Where an instruction sits in the file is not part of what it does: drop it from the key. */
const POSITION_FIELDS = new Set(['keyword', 'startLine', 'endLine', 'original', 'source']);

/** The expanded instruction as a key input: every field but its position and spelling. */
export function canonicalInstruction(instr: Instruction): unknown {
  const strip = (i: Instruction): Record<string, unknown> =>
    Object.fromEntries(Object.entries(i).filter(([k]) => !POSITION_FIELDS.has(k)));
  const out = strip(instr);
  if (instr.kind === 'ONBUILD' && instr.trigger !== undefined) {
    out.trigger = strip(instr.trigger);
  }
  return out;
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

/**
 * The variables a step's key or process needs: only RUN and ARG read them. Building the map
 * for every step cost O(variables) per step, O(n²) over 10,000 ENVs.
 */
function stepEnvironment(instr: Instruction, scope: ExpansionScope): Record<string, string> {
  return instr.kind === 'RUN' || instr.kind === 'ARG' ? scope.runEnvironment() : {};
}

function stepName(ref: StepRef): string {
  const name = ref.stage.name !== undefined ? ref.stage.name : `stage-${ref.stage.index}`;
  const text = ref.instruction.original.replace(/\s+/g, ' ').trim();
  return `[${name}] ${text.length > 200 ? `${text.slice(0, 197)}...` : text}`;
}

const DEFAULT_STEP_DISK_BYTES = 64 * 1024 * 1024 * 1024;
const DISK_CHECK_INTERVAL_MS = 2000;

/**
 * Watches what a RUN step writes to its layer (its overlay upper dir) with `du` every 2 s: a
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
    const used = await new Promise<number>((resolve) => {
      execFile('du', ['-sx', '--block-size=1', upper], (err, stdout) => {
        resolve(err === null ? Number(stdout.split('\t')[0]) : 0);
      });
    });
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
