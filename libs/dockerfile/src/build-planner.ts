// Stage graph of a Dockerfile for one build: which stages the target needs, what each one
// starts from and reads from, in which order, and which can run at the same time.
// Mirrors BuildKit's dockerfile2llb stage resolution (FROM <earlier stage>, COPY --from,
// RUN --mount=from=, by name or index; unreachable stages are not built).
import { DockerfileError } from './dockerfile-error';
import { DOCKERFILE_LIMITS } from './dockerfile-limits';
import { expandInstruction } from './expand-instruction';
import { ExpansionScope, PLATFORM_ARGS, PROXY_ARGS, platformArgs, type ScopeSeed } from './expansion-scope';
import type { Dockerfile, Instruction, Stage } from './instructions';

/** Options of {@link planBuild}. */
export interface PlanOptions {
  /** `--target`: a stage name (case-insensitive). Default: the last stage. */
  target?: string;
  /** `--build-arg` values. */
  buildArgs?: Record<string, string>;
  /** Platform the image is built for (`os/arch[/variant]`). Default `linux/amd64`. */
  targetPlatform?: string;
  /** Platform of the build host. Default `linux/amd64`. */
  buildPlatform?: string;
}

/** What a stage starts from. */
export type StageBase =
  | { kind: 'scratch' }
  /** An image to resolve from a registry (already expanded). */
  | { kind: 'image'; ref: string }
  /** The result of an earlier stage. */
  | { kind: 'stage'; index: number };

/** Why a stage depends on another stage or an image. */
export interface StageDependency {
  via: 'FROM' | 'COPY --from' | 'RUN --mount';
  /** 1-based line of the instruction. */
  line: number;
  /** The reference as written after expansion. */
  ref: string;
  /** Set when the reference is a stage. */
  stageIndex?: number;
  /** Set when the reference is an image. */
  image?: string;
}

/** One stage the target needs. */
export interface PlannedStage {
  index: number;
  name?: string;
  stage: Stage;
  base: StageBase;
  /** Expanded `FROM --platform`, if any. */
  platform?: string;
  /** Indexes of the stages this one needs (base included), ascending. */
  dependsOn: number[];
  /** Every stage or image reference, with the instruction that makes it. */
  dependencies: StageDependency[];
  /** Images read by COPY --from / RUN --mount=from= (not the base). */
  imageSources: string[];
  /** 0 when it needs no other stage; otherwise 1 + the highest level of its dependencies. */
  level: number;
}

/** The result of {@link planBuild}: plain data, JSON-compatible. */
export interface BuildPlan {
  /** Index of the target stage. */
  target: number;
  /** The needed stages in an order where each comes after its dependencies (ascending index). */
  stages: PlannedStage[];
  /** Stage indexes grouped by level: stages of one group are independent of each other. */
  parallelGroups: number[][];
  /** Stages the target does not need (not built). */
  skipped: number[];
  /** Build args no ARG of the global scope or of a needed stage declares (BuildKit warns). */
  unusedBuildArgs: string[];
  /** Seed for {@link createStageScope}. */
  scope: ScopeSeed;
}

function planError(detail: string, line?: number): DockerfileError {
  return new DockerfileError('DOCKERFILE_PLAN', detail, line);
}

/** Resolves global ARGs in order: build arg, else default expanded with earlier globals. */
function resolveGlobalArgs(df: Dockerfile, seed: ScopeSeed): Record<string, string | undefined> {
  const resolved: Record<string, string | undefined> = {};
  // One scope for the whole section (a fresh one per ARG, as before, cost O(n²) and reset the
  // substitution budget); applying each resolved ARG also checks maxEnvironmentLength.
  const scope = ExpansionScope.global(seed);
  for (const raw of df.globalArgs) {
    const arg = expandInstruction(raw, scope);
    for (const { name, defaultValue } of arg.args) {
      const value = Object.prototype.hasOwnProperty.call(seed.buildArgs, name)
        ? seed.buildArgs[name]
        : (defaultValue ?? seed.automaticArgs[name]);
      resolved[name] = value;
      scope.apply({ ...arg, args: [value === undefined ? { name } : { name, defaultValue: value }] });
    }
  }
  return resolved;
}

/**
 * Plans a build of `dockerfile`: resolves each stage's base, finds the stages `target`
 * needs, orders them and groups the independent ones.
 *
 * @throws {DockerfileError} code `DOCKERFILE_PLAN` for an unknown target, a `--from` naming
 *   the current or a later stage, or an out-of-range stage index; `DOCKERFILE_EXPANSION`
 *   when a FROM line or a `--from` does not expand.
 */
export function planBuild(dockerfile: Dockerfile, options: PlanOptions = {}): BuildPlan {
  const buildArgs = { ...(options.buildArgs ?? {}) };
  const given = Object.keys(buildArgs).length;
  if (given > DOCKERFILE_LIMITS.maxArgs) {
    throw new DockerfileError(
      'DOCKERFILE_LIMIT',
      `${given} build args exceed the limit maxArgs (${DOCKERFILE_LIMITS.maxArgs})`,
      undefined,
    );
  }
  const automaticArgs = {
    ...platformArgs(options.targetPlatform ?? 'linux/amd64', 'TARGET'),
    ...platformArgs(options.buildPlatform ?? 'linux/amd64', 'BUILD'),
  };
  const seed0: ScopeSeed = {
    escapeToken: dockerfile.directives.escape,
    buildArgs,
    globalArgs: {},
    automaticArgs,
  };
  const globalArgs = resolveGlobalArgs(dockerfile, seed0);
  const seed: ScopeSeed = { ...seed0, globalArgs };
  const globalScope = ExpansionScope.global(seed);
  const stages = dockerfile.stages;

  const planned = stages.map((stage): PlannedStage => {
    const from = expandInstruction(stage.from, globalScope);
    const ref = from.image;
    const dependencies: StageDependency[] = [];
    let base: StageBase;
    const earlier = stages.findIndex((s) => s.index < stage.index && s.name === ref.toLowerCase());
    if (earlier >= 0) {
      base = { kind: 'stage', index: earlier };
      dependencies.push({ via: 'FROM', line: from.startLine, ref, stageIndex: earlier });
    } else if (ref.toLowerCase() === 'scratch') {
      base = { kind: 'scratch' };
    } else {
      base = { kind: 'image', ref };
      dependencies.push({ via: 'FROM', line: from.startLine, ref, image: ref });
    }
    dependencies.push(...sourceDependencies(stage, stages, seed));
    const dependsOn = [
      ...new Set(dependencies.flatMap((d) => (d.stageIndex === undefined ? [] : [d.stageIndex]))),
    ].sort((a, b) => a - b);
    const imageSources = [
      ...new Set(dependencies.flatMap((d) => (d.image !== undefined && d.via !== 'FROM' ? [d.image] : []))),
    ];
    return {
      index: stage.index,
      ...(stage.name !== undefined ? { name: stage.name } : {}),
      stage,
      base,
      ...(from.platform !== undefined ? { platform: from.platform } : {}),
      dependsOn,
      dependencies,
      imageSources,
      level: 0,
    };
  });

  let target = stages.length - 1;
  if (options.target !== undefined && options.target !== '') {
    const wanted = options.target.toLowerCase();
    target = stages.findIndex((s) => s.name === wanted);
    if (target < 0) {
      const names = stages.flatMap((s) => (s.name !== undefined ? [s.name] : []));
      throw planError(
        `target stage "${options.target}" could not be found` +
          (names.length > 0 ? ` (stages: ${names.join(', ')})` : ''),
      );
    }
  }

  const needed = new Set<number>();
  const visit = (i: number): void => {
    if (needed.has(i)) {
      return;
    }
    needed.add(i);
    for (const dep of planned[i]?.dependsOn ?? []) {
      visit(dep);
    }
  };
  visit(target);

  // Dependencies always point to earlier stages, so ascending index is a topological order.
  const ordered = planned.filter((p) => needed.has(p.index));
  for (const p of ordered) {
    p.level = p.dependsOn.reduce((lvl, dep) => Math.max(lvl, (planned[dep]?.level ?? 0) + 1), 0);
  }
  const parallelGroups: number[][] = [];
  for (const p of ordered) {
    (parallelGroups[p.level] ??= []).push(p.index);
  }

  const declared = new Set<string>(dockerfile.globalArgs.flatMap((a) => a.args.map((d) => d.name)));
  for (const p of ordered) {
    for (const instr of p.stage.instructions) {
      if (instr.kind === 'ARG') {
        instr.args.forEach((d) => declared.add(d.name));
      }
    }
  }
  const unusedBuildArgs = Object.keys(buildArgs)
    .filter((k) => !declared.has(k) && !PROXY_ARGS.includes(k) && !PLATFORM_ARGS.includes(k))
    .sort();

  return {
    target,
    stages: ordered,
    parallelGroups,
    skipped: stages.filter((s) => !needed.has(s.index)).map((s) => s.index),
    unusedBuildArgs,
    scope: seed,
  };
}

/** COPY --from and RUN --mount=from= references of a stage, expanded as the stage sees them. */
function sourceDependencies(stage: Stage, stages: Stage[], seed: ScopeSeed): StageDependency[] {
  const deps: StageDependency[] = [];
  const scope = new ExpansionScope(seed);
  for (const raw of stage.instructions) {
    const refs: [StageDependency['via'], string][] = [];
    let instr: Instruction = raw;
    if (raw.kind === 'COPY' && raw.from !== undefined) {
      const copy = expandInstruction(raw, scope);
      instr = copy;
      refs.push(['COPY --from', copy.from ?? '']);
    } else if (raw.kind === 'RUN' && raw.mounts.some((m) => m.from !== undefined)) {
      const run = expandInstruction(raw, scope);
      instr = run;
      for (const m of run.mounts) {
        if (m.from !== undefined) {
          refs.push(['RUN --mount', m.from]);
        }
      }
    } else if (raw.kind === 'ENV' || raw.kind === 'ARG') {
      instr = expandInstruction(raw, scope);
    }
    scope.apply(instr);
    for (const [via, ref] of refs) {
      deps.push(resolveSource(via, ref, raw.startLine, stage, stages));
    }
  }
  return deps;
}

function resolveSource(
  via: StageDependency['via'],
  ref: string,
  line: number,
  stage: Stage,
  stages: Stage[],
): StageDependency {
  const flag = via === 'COPY --from' ? '--from' : '--mount from';
  if (/^[+-]?\d+$/.test(ref)) {
    const index = Number(ref);
    if (index < 0 || index >= stages.length) {
      throw planError(`invalid stage index ${ref} in ${flag}=${ref}`, line);
    }
    if (index >= stage.index) {
      throw planError(`${flag}=${ref} refers to the current or a later build stage`, line);
    }
    return { via, line, ref, stageIndex: index };
  }
  const named = stages.find((s) => s.name !== undefined && s.name === ref.toLowerCase());
  if (named !== undefined) {
    if (named.index >= stage.index) {
      throw planError(
        `${flag}=${ref} refers to the current or a later build stage "${named.name ?? ''}"`,
        line,
      );
    }
    return { via, line, ref, stageIndex: named.index };
  }
  if (ref === '') {
    throw planError(`${flag} must not be empty`, line);
  }
  return { via, line, ref, image: ref };
}

/**
 * A fresh scope for executing stage `stageIndex` of `plan`, seeded with the base image's
 * environment (from its config). Feed each instruction through `expandInstruction(instr,
 * scope)` then `scope.apply(expanded)`, in order.
 */
export function createStageScope(plan: BuildPlan, baseEnv: Record<string, string> = {}): ExpansionScope {
  return new ExpansionScope({ ...plan.scope, baseEnv });
}

/**
 * Convenience for executors and cache keys: every instruction of a planned stage expanded in
 * order (ENV/ARG applied as they come), with the scope as it stands after each one.
 */
export function expandStage(
  plan: BuildPlan,
  stageIndex: number,
  baseEnv: Record<string, string> = {},
): { instruction: Instruction; runEnvironment: Record<string, string> }[] {
  const planned = plan.stages.find((s) => s.index === stageIndex);
  if (planned === undefined) {
    throw planError(`stage ${stageIndex} is not part of the plan`);
  }
  const scope = createStageScope(plan, baseEnv);
  return planned.stage.instructions.map((raw) => {
    const instruction = expandInstruction(raw, scope);
    scope.apply(instruction);
    return { instruction, runEnvironment: scope.runEnvironment() };
  });
}
