import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfineError, nameBeneath, readFileBeneath } from '@stratum/confine';
import { BuildJobData, Digest, settledAll, StepRecord, StepStatus } from '@stratum/contracts';
import {
  BuildPlan,
  CHECK_BUILD_ARG,
  CheckConfig,
  checkDockerfile,
  checkRuleEnabled,
  checkWarning,
  createStageScope,
  Dockerignore,
  formatCheckWarning,
  DockerfileError,
  expandInstruction,
  ExpansionScope,
  Instruction,
  parseCheckConfig,
  parseDockerfile,
  planBuild,
  PlannedStage,
} from '@stratum/dockerfile';
import { ContainerFilesystems, ContainerFs, ImageService, LayerDescriptor } from '@stratum/images';
import { IdMap, LayerCache } from '@stratum/layers';
import {
  formatPlatform,
  HistoryEntry,
  parsePlatform,
  Platform,
  PlatformError,
  platformMatches,
  tryParseReference,
} from '@stratum/oci';
import { BlobDigest } from '@stratum/storage';
import {
  BuildCacheIndex,
  BuildCacheRecord,
  MemoryBuildCacheIndex,
  stableJson,
  stepCacheKey,
} from './build-cache';
import { BuildContext } from './build-context';
import { readDockerignore } from './context-filter';
import { BuildError } from './build-errors';
import { prepareCopyStep } from './copy-step';
import { BuildEngineOptions, BuildOutcome, BuildRunContext, RemoteImage } from './engine-options';
import { addHistory, cloneState, envMap, ImageState, scratchState } from './image-state';
import { NamedContextHost, NamedContexts } from './named-context';
import { LayerExports } from './layer-export';
import { applyMetadata, isMetadataInstruction } from './metadata-steps';
import { DEFAULT_RUN_CACHE_MAX_BYTES, RunCacheStore } from './run-cache';
import { MountedFrom } from './run-mounts';
import { prepareRunStep } from './run-step';
import { BuildAborted, PreparedStep, stateWorkdir } from './step-host';
import { workdirStep } from './workdir-step';

/** Layers stored at once beside a build by default (LAYER_EXPORT_CONCURRENCY). */
const DEFAULT_LAYER_EXPORTS = 2;

interface StepRef {
  readonly index: number;
  readonly stage: PlannedStage;
  readonly instruction: Instruction;
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
      options.runCacheMaxBytes ?? DEFAULT_RUN_CACHE_MAX_BYTES,
    );
  }

  /** An engine like this one (runtime, limits, user namespace) with some options replaced. */
  derive(overrides: Partial<BuildEngineOptions>): BuildEngine {
    return new BuildEngine({ ...this.options, ...overrides });
  }

  /**
   * Resolves when what ended builds left to the background has ended: their last containers'
   * runc state and bundles, and their sandbox networks (a build's result does not wait for them).
   */
  async settled(): Promise<void> {
    await this.options.runtime.settled();
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
      const outcome = await run.execute();
      // reported before the cleanup below, which the result does not wait for
      await ctx.onImage?.(outcome);
      return outcome;
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
        .trim()
        .catch((err: unknown) => ctx.reporter.log(null, 'system', `cache mount trim: ${String(err)}\n`));
    }
  }
}

/** One build's execution state. */
class BuildRun implements NamedContextHost {
  private readonly steps: StepRecord[] = [];
  /** `--build-context` sources, made into states when first named. */
  private readonly named: NamedContexts;
  private readonly live = new Set<ContainerFs>();
  /**
   * Cache entries being written for steps whose layer was stored already (or that made none):
   * a Redis write each (fsync'd with the shipped config), so the next step does not wait for
   * it; the image is written only once all are (so an unchanged rebuild is fully cached).
   * Each settles to its error or null.
   */
  private readonly pendingRecords: Promise<Error | null>[] = [];
  private readonly stageNames = new Map<string, number>();
  /** The build's `# check=` configuration, once the Dockerfile is planned. */
  private checkConfig: CheckConfig | null = null;
  /** Each finished stage's state, by stage index: what FROM <stage> and --from=<stage> read. */
  private readonly results = new Map<number, ImageState>();
  /** `SOURCE_DATE_EPOCH` build arg (seconds), or null. */
  readonly epoch: number | null;
  /** Layers of this build's steps being stored beside the build (see LayerExports). */
  private readonly exports: LayerExports;
  /** The host's platform (BUILDPLATFORM) and the one built for (TARGETPLATFORM), normalised. */
  readonly buildPlatform: string;
  readonly targetPlatform: string;
  /** Each stage's platform (FROM --platform, else the target), by stage index. */
  private readonly stagePlatforms = new Map<number, Platform>();

  constructor(
    readonly engine: BuildEngine,
    readonly options: BuildEngineOptions,
    readonly data: BuildJobData,
    readonly ctx: BuildRunContext,
    readonly jobDir: string,
    readonly context: BuildContext,
    readonly filesystems: ContainerFilesystems,
  ) {
    this.epoch = sourceDateEpoch(data.buildArgs);
    this.named = new NamedContexts(this, data.namedContexts);
    this.exports = new LayerExports(
      filesystems,
      Math.max(1, options.layerExportConcurrency ?? DEFAULT_LAYER_EXPORTS),
    );
    this.buildPlatform = options.nativePlatform ?? 'linux/amd64';
    this.targetPlatform = ctx.platform ?? this.buildPlatform;
  }

  /** A stage's platform: its `FROM --platform=` (expanded by the planner), else the target's. */
  private stagePlatform(stage: PlannedStage): Platform {
    let p = this.stagePlatforms.get(stage.index);
    if (p === undefined) {
      try {
        p = parsePlatform(stage.platform ?? this.targetPlatform);
      } catch (err) {
        throw err instanceof PlatformError
          ? new BuildError(`FROM --platform: ${err.message}`, stage.stage.from.startLine)
          : err;
      }
      this.stagePlatforms.set(stage.index, p);
    }
    return p;
  }

  /**
   * A RUN in a stage whose platform this host cannot run: the build fails naming it (the
   * worker serves only platforms it runs, so this means a FROM --platform of another one).
   */
  private checkRunnable(stageIndex: number, line: number): void {
    const p = this.stagePlatforms.get(stageIndex);
    if (p === undefined) {
      return;
    }
    const name = formatPlatform(p);
    const runnable = this.options.runnablePlatforms ?? [this.buildPlatform];
    if (!runnable.includes(name)) {
      throw new BuildError(
        `RUN for ${name}: this worker runs ${runnable.join(', ')} only (register a qemu binfmt handler with the F flag for ${name}: infra/setup-binfmt.sh)`,
        line,
      );
    }
  }

  private checkAbort(): void {
    if (this.ctx.signal.aborted) {
      throw new BuildAborted();
    }
  }

  /** Time stamp of new history entries and of the image: now, or SOURCE_DATE_EPOCH when given. */
  now(): string {
    return (this.epoch === null ? new Date() : new Date(this.epoch * 1000)).toISOString();
  }

  async execute(): Promise<BuildOutcome> {
    const plan = await this.plan();
    for (const s of plan.stages) {
      if (s.name !== undefined) {
        this.stageNames.set(s.name.toLowerCase(), s.index);
      }
    }
    // A named context with a stage's name replaces that stage, whose own steps then do not run:
    // buildx "When Dockerfile defines a stage with the same name it is overwritten".
    const overridden = new Map<number, Promise<ImageState>>();
    for (const stage of plan.stages) {
      const named =
        stage.name !== undefined ? this.named.state(stage.name, stage.stage.from.startLine) : null;
      if (named !== null) {
        named.catch(() => undefined); // awaited where the stage is needed; not unhandled meanwhile
        overridden.set(stage.index, named);
        this.ctx.reporter.log(
          null,
          'system',
          `stage ${stage.name ?? stage.index} (line ${stage.stage.from.startLine}): replaced by the named context --build-context ${stage.name ?? ''}\n`,
        );
      }
    }
    const stepRefs: StepRef[] = [];
    for (const stage of plan.stages) {
      if (overridden.has(stage.index)) {
        continue;
      }
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
    const results = this.results;
    for (const group of plan.parallelGroups) {
      await Promise.all(
        group.map(async (stageIndex) => {
          const stage = plan.stages.find((s) => s.index === stageIndex);
          if (stage === undefined) {
            return;
          }
          const named = overridden.get(stageIndex);
          const state =
            named !== undefined
              ? cloneState(await named)
              : await this.runStage(plan, stage, stepRefs, results);
          results.set(stageIndex, state);
        }),
      );
    }
    const final = results.get(plan.target);
    if (final === undefined) {
      throw new BuildError(`target stage ${plan.target} produced no image`);
    }
    final.config.created = this.epoch !== null ? this.now() : (latestHistoryTime(final) ?? this.now());
    // Every layer stored (of every stage) and every step's cache entry written, then the image.
    const layers = await this.exports.resolve(final.layers);
    await this.exports.settle();
    const recordFailure = (await Promise.all(this.pendingRecords)).find((e) => e !== null);
    if (recordFailure !== undefined) {
      throw recordFailure;
    }
    // The frozen upper dirs go to the host's layer cache beside the image write: neither needs
    // the other (a build that finds a layer not adopted yet extracts it), and the adoption's
    // renames and small files took 7-8 ms of a cold steps build's end.
    const [written] = await settledAll([
      this.engine.images.write({
        config: final.config,
        layers,
        tags: this.data.tags,
        ...(this.ctx.untagged === true ? { untagged: true } : {}),
      }),
      this.exports.finish((fs, layer) => this.filesystems.adoptUpper(fs, layer)),
    ] as const);
    const cached = this.steps.filter((s) => s.status === StepStatus.Cached).length;
    this.ctx.reporter.log(
      null,
      'system',
      `${cached} of ${this.steps.length} steps cached; writing image ${written.manifestDigest}${this.ctx.untagged === true ? ` (${this.targetPlatform})` : this.data.tags.length ? ` as ${this.data.tags.join(', ')}` : ''}\n`,
    );
    return {
      imageDigest: written.manifestDigest as Digest,
      configDigest: written.configDigest as Digest,
      manifestSize: written.manifestSize,
    };
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
      targetPlatform: this.targetPlatform,
      buildPlatform: this.buildPlatform,
    });
    // Build checks head every build log, as BuildKit prints them; `# check=…;error=true` fails
    // the build on any (the empty-continuation and MAINTAINER notes of the parser are checks).
    // Base images already in this registry lend their environment to UndefinedVar (as BuildKit
    // reads the base's config); one to be pulled is not fetched for this: PATH only.
    const baseEnv = new Map<string, string[]>();
    for (const stage of plan.stages) {
      if (stage.base.kind === 'image' && !baseEnv.has(stage.base.ref)) {
        const image = await this.engine.images.resolve(stage.base.ref).catch(() => null);
        const env = image?.config.config?.Env ?? [];
        baseEnv.set(
          stage.base.ref,
          env.map((e) => e.split('=', 1)[0] ?? ''),
        );
      }
    }
    // CopyIgnoredFile (experimental, asked for by `# check=experimental=…`) needs the context's
    // ignore file: the context is extracted for it only then.
    let config: CheckConfig | null = null;
    try {
      config = parseCheckConfig(this.data.buildArgs[CHECK_BUILD_ARG] ?? dockerfile.directives.check);
    } catch {
      // a bad directive: checkDockerfile below fails with its line
    }
    let dockerignore: Dockerignore | null = null;
    if (config !== null && checkRuleEnabled(config, 'CopyIgnoredFile')) {
      await this.context.materialize();
      dockerignore = await readDockerignore(this.contextDir, this.data.dockerfile);
    }
    const checks = checkDockerfile(text, {
      ...(this.data.target !== null ? { target: this.data.target } : {}),
      buildArgs: this.data.buildArgs,
      baseImageEnv: (ref) => baseEnv.get(ref),
      ...(dockerignore !== null ? { dockerignore } : {}),
    });
    this.checkConfig = checks.config;
    if (checks.warnings.length > 0) {
      const n = checks.warnings.length;
      const lines = checks.warnings.map((w) => ` - ${formatCheckWarning(w)}\n`).join('');
      this.ctx.reporter.log(null, 'system', `${n} warning${n === 1 ? '' : 's'} found:\n${lines}`);
    }
    if (checks.error !== undefined) {
      throw new BuildError(checks.error);
    }
    const unused = plan.unusedBuildArgs.filter((a) => a !== 'SOURCE_DATE_EPOCH' && a !== CHECK_BUILD_ARG);
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
    const platform = this.stagePlatform(stage);
    switch (stage.base.kind) {
      case 'scratch':
        return scratchState(platform);
      case 'stage': {
        const parent = results.get(stage.base.index);
        if (parent === undefined) {
          throw new BuildError(`stage ${stage.base.index} has not been built`, stage.stage.from.startLine);
        }
        return cloneState(parent);
      }
      case 'image': {
        // A named context of that name (--build-context) stands in for the image, as buildx.
        const named = this.named.state(stage.base.ref, stage.stage.from.startLine);
        if (named !== null) {
          return cloneState(await named);
        }
        const image = await this.resolveImage(stage.base.ref, stage.stage.from.startLine, platform, true);
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
    platform: Platform,
    base = false,
  ): Promise<Awaited<ReturnType<ImageService['resolve']>>> {
    const image = await this.findImage(ref, line, platform);
    if (!platformMatches(image.config, platform)) {
      const actual = formatPlatform({
        os: image.config.os,
        architecture: image.config.architecture,
        variant: image.config.variant,
      });
      if (!base) {
        this.ctx.reporter.log(
          null,
          'system',
          `warning: line ${line}: ${ref} is for ${actual}, not ${formatPlatform(platform)}\n`,
        );
      } else if (
        this.checkConfig === null ||
        checkRuleEnabled(this.checkConfig, 'InvalidBaseImagePlatform')
      ) {
        // BuildKit uses such a base all the same and reports the InvalidBaseImagePlatform check
        // (a build failure under `# check=error=true`).
        const w = checkWarning(
          'InvalidBaseImagePlatform',
          `Base image ${ref} was pulled with platform "${actual}", expected "${formatPlatform(platform)}" for current build`,
          line,
        );
        this.ctx.reporter.log(null, 'system', `warning: ${formatCheckWarning(w)}\n`);
        if (this.checkConfig?.error === true) {
          throw new BuildError('lint violation found for rules: InvalidBaseImagePlatform', line);
        }
      }
    }
    return image;
  }

  private async findImage(
    ref: string,
    line: number,
    platform: Platform,
  ): Promise<Awaited<ReturnType<ImageService['resolve']>>> {
    const parsed = tryParseReference(ref);
    const remote = this.options.remoteImages;
    let localMiss: string | null = null;
    // A pull-through mirror's repository is resolved through its upstream, below.
    const pullThrough = parsed !== null && parsed.registry === null && remote?.isPullThrough(ref) === true;
    if (!pullThrough && (parsed === null || parsed.registry === null)) {
      try {
        const image = await this.engine.images.resolve(ref, platform);
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
      fetched = await remote.resolve(ref, platform, this.ctx.signal);
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
    const firstRun = stage.stage.instructions.find((i) => i.kind === 'RUN');
    if (firstRun !== undefined) {
      this.checkRunnable(stage.index, firstRun.startLine);
    }
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
      let parsed: Instruction[];
      try {
        parsed = parseDockerfile(`FROM scratch\n${trigger}\n`).stages[0].instructions;
      } catch (err) {
        // Kept unparsed in the base image (as BuildKit keeps it): it fails here, in the child
        // build that runs it, at the child's FROM line.
        if (err instanceof DockerfileError) {
          throw new BuildError(
            `ONBUILD trigger of the base image "${trigger}": ${err.detail}`,
            stage.stage.from.startLine,
          );
        }
        throw err;
      }
      for (const instr of parsed) {
        const expanded = expandInstruction(instr, scope);
        scope.apply(expanded);
        this.ctx.reporter.log(null, 'system', `running ONBUILD trigger: ${trigger}\n`);
        await this.runStep(null, state, expanded, stepEnvironment(expanded, scope));
      }
    }
    for (const ref of stepRefs.filter((r) => r.stage.index === stage.index)) {
      this.checkAbort();
      const expanded = expandInstruction(ref.instruction, scope);
      scope.apply(expanded);
      await this.runStep(ref.index, state, expanded, stepEnvironment(expanded, scope));
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
      // A layer of an earlier step that could not be stored fails the build before more work.
      this.exports.check();
      const prepared = await this.prepare(index, state, instr, runEnv);
      const hit = this.data.noCache ? null : await this.lookup(prepared.key);
      const createdBy =
        prepared.metadata !== null ? applyMetadata(state, prepared.metadata) : prepared.createdBy;
      if (hit !== null) {
        if (hit.layer !== null) {
          state.layers.push(hit.layer);
        }
        addHistory(state, hit.history);
        state.cacheKey = prepared.chainKey ?? prepared.key;
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
      state.cacheKey = prepared.chainKey ?? prepared.key;
      const record = (stored: LayerDescriptor | null): Promise<void> =>
        this.engine.cacheIndex.put(prepared.key, {
          version: 1,
          layer: stored,
          history,
          recordedAt: new Date().toISOString(),
        });
      if (layer !== null && this.exports.isPending(layer)) {
        // The step is done; its layer is still being stored. Its cache entry is written only
        // once the layer is (a crash in between loses the entry, never makes a wrong one).
        await report(StepStatus.Done, null);
        await this.exports.after(layer, async (stored) => {
          await record(stored);
          if (step !== null) {
            step.layerSize = stored.size;
            await this.ctx.reporter.step(step);
          }
        });
        return;
      }
      this.pendingRecords.push(
        record(layer).then(
          () => null,
          (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
        ),
      );
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

  /** Cache key and work of one expanded instruction. */ private async prepare(
    stepIndex: number | null,
    state: ImageState,
    instr: Exclude<Instruction, { kind: 'FROM' }>,
    runEnv: Record<string, string>,
  ): Promise<PreparedStep> {
    const parent = state.cacheKey ?? 'scratch';
    const instruction = canonicalInstruction(instr);
    const cfg = state.config.config ?? {};
    const workdir = stateWorkdir(state);
    const epoch = this.epoch;
    if (instr.kind === 'WORKDIR') {
      const key = stepCacheKey({ parent, instruction, inputs: { workdir, user: cfg.User ?? '', epoch } });
      return { key, metadata: instr, run: () => workdirStep(this, state, instr) };
    }
    if (isMetadataInstruction(instr)) {
      // ARG changes nothing in the image but the RUN environment; its value keys it all the same.
      const inputs = instr.kind === 'ARG' ? { env: runEnv, epoch } : { epoch };
      return { key: stepCacheKey({ parent, instruction, inputs }), metadata: instr };
    }
    switch (instr.kind) {
      case 'RUN':
        return prepareRunStep(this, { state, instr, parent, instruction, workdir, runEnv, stepIndex });
      case 'COPY':
      case 'ADD':
        return prepareCopyStep(this, { state, instr, parent, instruction, workdir, runEnv, stepIndex });
    }
  }

  async withContainer(
    state: ImageState,
    work: (fs: ContainerFs) => Promise<boolean | void>,
    options: { idmap?: IdMap } = {},
  ): Promise<LayerDescriptor | null> {
    const id = `${this.data.buildId.slice(0, 8)}-${randomBytes(6).toString('hex')}`;
    const fs = await this.filesystems.create(id, state.layers, { volatile: true, ...options });
    this.live.add(fs);
    let frozen = false;
    try {
      const changed = await work(fs);
      await this.filesystems.unmountPruned(fs);
      this.checkAbort();
      if (changed === false) {
        return null;
      }
      const pipelined = (this.options.layerExportConcurrency ?? DEFAULT_LAYER_EXPORTS) > 0;
      const snapshot = (f: ContainerFs): Promise<LayerDescriptor> =>
        this.filesystems.snapshot(f, {
          compression: this.options.compression ?? 'gzip',
          ...(this.epoch !== null ? { sourceDateEpoch: this.epoch } : {}),
          // beside the next step: that step gets the CPU first (same bytes either way)
          ...(pipelined ? { niceness: BACKGROUND_EXPORT_NICENESS } : {}),
        });
      if (pipelined) {
        // The upper dir is frozen now: the next step stacks it at once, its blob follows.
        frozen = true;
        return this.exports.add(fs, snapshot);
      }
      const layer = await snapshot(fs);
      await this.filesystems.adoptUpper(fs, layer);
      return layer;
    } finally {
      if (!frozen) {
        await this.filesystems.remove(fs);
      }
      this.live.delete(fs);
    }
  }

  containerStarted(): void {
    this.exports.nudge();
  }

  async mountState(name: string, state: ImageState, options: { idmap?: IdMap } = {}): Promise<MountedFrom> {
    const fs = await this.filesystems.create(name, state.layers, { volatile: true, ...options });
    this.live.add(fs);
    return {
      root: fs.merged,
      release: async () => {
        await this.filesystems.remove(fs);
        this.live.delete(fs);
      },
    };
  }

  async fromState(from: string, line: number): Promise<ImageState> {
    // A stage by name or index; otherwise an image reference.
    for (const [index, state] of this.results) {
      if (String(index) === from) {
        return state;
      }
    }
    const byName = this.stageNames.get(from.toLowerCase());
    if (byName !== undefined) {
      const state = this.results.get(byName);
      if (state !== undefined) {
        return state;
      }
    }
    const named = this.named.state(from, line);
    if (named !== null) {
      return named;
    }
    return this.imageState(from, line);
  }

  async imageState(ref: string, line: number): Promise<ImageState> {
    // An image named by COPY --from / --mount from= is taken for the target platform (BuildKit).
    const image = await this.resolveImage(ref, line, parsePlatform(this.targetPlatform));
    return { layers: [...image.layers], config: image.config, cacheKey: `image:${image.manifestDigest}` };
  }

  async lookupLayer(key: string): Promise<{ layer: LayerDescriptor | null; history: HistoryEntry } | null> {
    return this.lookup(key);
  }

  async recordLayer(key: string, layer: LayerDescriptor | null, history: HistoryEntry): Promise<void> {
    const record = (stored: LayerDescriptor | null): Promise<void> =>
      this.engine.cacheIndex.put(key, {
        version: 1,
        layer: stored,
        history,
        recordedAt: new Date().toISOString(),
      });
    if (layer !== null && this.exports.isPending(layer)) {
      await this.exports.after(layer, record);
      return;
    }
    await record(layer);
  }

  /** Unmounts and removes what a failed or cancelled build left mounted. */
  async cleanup(): Promise<void> {
    // Exports still reading frozen upper dirs end before the job dir goes.
    await this.exports.drain();
    await Promise.all(this.pendingRecords);
    // RUN containers' runc state and networks, torn down beside the later steps
    await this.options.runtime.settled();
    // closed beside the next build (the runtime's settled() waits for them)
    this.options.runtime.releaseSandboxes(this.data.buildId);
    for (const fs of [...this.live]) {
      await this.filesystems.remove(fs).catch(() => undefined);
      this.live.delete(fs);
    }
  }
}

/** nice of a pipelined export's compressor process (see CompressionOptions.niceness). */
const BACKGROUND_EXPORT_NICENESS = 10;

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
