import { StratumError } from '@stratum/contracts';

/**
 * A build that fails because of what the user asked (a RUN that exits non-zero, a COPY of a
 * missing file, an unknown base image): reported with the Dockerfile line, never retried.
 */
export class BuildError extends StratumError {
  constructor(
    message: string,
    readonly line: number | null = null,
  ) {
    super('BUILD_FAILED', line === null ? message : `Dockerfile:${line}: ${message}`);
    this.name = 'BuildError';
  }
}

const USER_ERROR_CODES = new Set([
  'BUILD_FAILED',
  'DOCKERFILE_INVALID',
  // LayerError codes of a tar the user gave (context, ADD archive, base image layer)
  'LAYER_PATH_ESCAPE',
  'LAYER_INVALID_TAR',
  'LAYER_UNSUPPORTED_ENTRY',
  'LAYER_LINK_TARGET_MISSING',
  'LAYER_NOT_A_DIRECTORY',
  'LAYER_DIGEST_MISMATCH',
  'CONTEXT_INVALID',
  'NAME_INVALID',
  'TAG_INVALID',
  'MANIFEST_UNKNOWN',
  'IMAGE_UNKNOWN',
]);

/** True for failures caused by the build's own inputs (retrying cannot help). */
export function isUserBuildError(err: unknown): boolean {
  if (err instanceof BuildError) {
    return true;
  }
  if (err instanceof Error && err.name === 'DockerfileError') {
    return true;
  }
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && USER_ERROR_CODES.has(code);
}
