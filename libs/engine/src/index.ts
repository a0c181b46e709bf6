/**
 * `@stratum/engine`: executes Dockerfile builds on overlay container filesystems with runc,
 * one layer per filesystem step, with a step cache shared through Redis and the blob store,
 * and writes the resulting image.
 */
export { BuildEngine, canonicalInstruction } from './build-engine';
export type {
  BuildEngineOptions,
  BuildOutcome,
  BuildRunContext,
  RemoteImage,
  RemoteImageSource,
} from './engine-options';
export { runArgs } from './run-step';
export {
  cacheRecordKey,
  DEFAULT_CACHE_TTL_SECONDS,
  MemoryBuildCacheIndex,
  RedisBuildCacheIndex,
  stableJson,
  stepCacheKey,
  type BuildCacheIndex,
  type BuildCacheRecord,
  type StepKeyInput,
} from './build-cache';
export { BuildError, isUserBuildError, MAX_STORED_ERROR_LENGTH, truncateErrorMessage } from './build-errors';
export type { BuildReporter } from './build-reporter';
export { applyDockerignore } from './context-filter';
export { copyIntoContainer, matchSources, type CopyRequest, type SourceEntry } from './file-copy';
export { hashSources } from './source-hash';
export { applyMetadata, commandArgs, stageShell } from './metadata-steps';
export { selfTestBuild, SELF_TEST_DOCKERFILE, type SelfTestResult } from './self-test';
export { warmUpEngine } from './warm-up';
export { scratchState, type ImageState } from './image-state';
