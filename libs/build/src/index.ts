/**
 * `@stratum/build`: executes Dockerfile builds on overlay container filesystems with runc,
 * one layer per filesystem step, and writes the resulting image.
 */
export {
  BuildEngine,
  runArgs,
  type BuildEngineOptions,
  type BuildOutcome,
  type BuildRunContext,
} from './build-engine';
export { BuildError, isUserBuildError } from './build-errors';
export type { BuildReporter } from './build-reporter';
export { copyIntoContainer, containerPath, type CopyRequest } from './file-copy';
export { applyMetadata, commandArgs, stageShell } from './metadata-steps';
export { scratchState, type ImageState } from './image-state';
