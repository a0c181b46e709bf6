import { BuildJobData } from '@stratum/contracts';
import { ContainerFilesystems, ContainerFs, LayerDescriptor } from '@stratum/images';
import type { IdMap } from '@stratum/layers';
import { BuildCacheIndex } from './build-cache';
import { BuildContext } from './build-context';
import { BuildEngineOptions, BuildRunContext } from './engine-options';
import { MetadataInstruction } from './metadata-steps';
import { ImageState } from './image-state';
import { RunCacheStore } from './run-cache';
import { MountedFrom } from './run-mounts';

/** A step with its cache key computed, ready to be replayed from the cache or run. */
export interface PreparedStep {
  readonly key: string;
  /**
   * The key the next step builds on, when not {@link key}: a COPY --link step is looked up
   * by a key without its parent, but what follows it still depends on everything below.
   */
  readonly chainKey?: string;
  /** Config change, applied on a hit and on a miss alike (it is cheap and deterministic). */
  readonly metadata: MetadataInstruction | null;
  /** History text of a filesystem step (metadata steps get theirs from applying the change). */
  readonly createdBy?: string;
  /** The filesystem work on a miss: returns the new layer, or null when nothing changed. */
  readonly run?: () => Promise<LayerDescriptor | null>;
}

/** What every step of one instruction family gets, before its key and work are computed. */
export interface StepInput<I> {
  /** The stage's state so far (its layers, config and the key of the last step). */
  readonly state: ImageState;
  /** The expanded instruction. */
  readonly instr: I;
  /** The previous step's cache key, or `scratch`. */
  readonly parent: string;
  /** {@link canonicalInstruction} of `instr`: the instruction's part of the key. */
  readonly instruction: unknown;
  /** The stage's working directory at this step (`/` when unset). */
  readonly workdir: string;
  /** The variables RUN and ARG see (empty for the others). */
  readonly runEnv: Record<string, string>;
  /** The step's index in the build's step records; null for an ONBUILD trigger. */
  readonly stepIndex: number | null;
}

/**
 * What one build run lends the per-instruction step modules (run-step, copy-step,
 * workdir-step): the build's job, options and scratch space, and the few operations that need
 * the run's own state (its live mounts, the stages built so far).
 */
export interface StepHost {
  readonly options: BuildEngineOptions;
  readonly engine: { readonly cacheIndex: BuildCacheIndex; readonly runCache: RunCacheStore };
  readonly data: BuildJobData;
  readonly ctx: BuildRunContext;
  /** This build's scratch directory. */
  readonly jobDir: string;
  readonly context: BuildContext;
  readonly filesystems: ContainerFilesystems;
  /** `SOURCE_DATE_EPOCH` build arg (seconds), or null. */
  readonly epoch: number | null;
  /**
   * Mounts a container on the state's layers, runs `work` in it and snapshots the upper dir
   * as a new layer. `work` returning false means it changed nothing: no layer (null).
   */
  withContainer(
    state: ImageState,
    work: (fs: ContainerFs) => Promise<boolean | void>,
    options?: { idmap?: IdMap },
  ): Promise<LayerDescriptor | null>;
  /** A stage of this build (by name or index) or an image reference, as COPY --from names it. */
  fromState(from: string, line: number): Promise<ImageState>;
  /**
   * `state`'s layers mounted read-only-in-effect (throw-away upper) until `release`; with
   * `idmap`, seen through that uid range (for a step in its user namespace).
   */
  mountState(name: string, state: ImageState, options?: { idmap?: IdMap }): Promise<MountedFrom>;
  /** A step's container has started: the earlier steps' layer exports may go (LayerExports.nudge). */
  containerStarted(): void;
}

/** Thrown inside the engine when the build's signal fires. */
export class BuildAborted extends Error {
  constructor() {
    super('build aborted');
    this.name = 'BuildAborted';
  }
}

/** The working directory a step runs in: the config's, or `/`. */
export function stateWorkdir(state: ImageState): string {
  const cfg = state.config.config ?? {};
  return cfg.WorkingDir && cfg.WorkingDir !== '' ? cfg.WorkingDir : '/';
}
