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
  // a budget the build's own input blew (context size or entries, Dockerfile limits)
  'CONTEXT_TOO_LARGE',
  'DOCKERFILE_LIMIT',
  // ConfineError codes: a path of the build that leads out of its root, or a file over its limit
  'PATH_INVALID',
  'PATH_ESCAPE',
  'FILE_TOO_LARGE',
  'NAME_INVALID',
  'TAG_INVALID',
  'MANIFEST_UNKNOWN',
  'IMAGE_UNKNOWN',
]);

/**
 * V8's own budgets (a string or array past its maximum length, a runaway recursion): what a
 * hostile input that slipped past every explicit limit runs into. Another worker would run
 * into it again, so it counts as the build's fault, not the host's.
 */
const BUDGET_RANGE_ERROR =
  /^(Invalid (string|array|typed array) length|Array buffer allocation failed|Maximum call stack size exceeded)/;

/** True for failures caused by the build's own inputs (retrying cannot help). */
export function isUserBuildError(err: unknown): boolean {
  if (err instanceof BuildError) {
    return true;
  }
  if (err instanceof RangeError && BUDGET_RANGE_ERROR.test(err.message)) {
    return true;
  }
  if (err instanceof Error && err.name === 'DockerfileError') {
    return true;
  }
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && USER_ERROR_CODES.has(code);
}

/** Longest error text kept in a build record and its `error` event. */
export const MAX_STORED_ERROR_LENGTH = 4096;

/**
 * Shortens an error for storing and showing: a failing RUN's message quotes its whole command
 * (0.9 MB seen). Keeps the start (`Dockerfile:12: process "/bin/sh -c ...`, with the line) and
 * the end (`exit code: 1`), and says how much was left out.
 */
export function truncateErrorMessage(message: string, max = MAX_STORED_ERROR_LENGTH): string {
  if (message.length <= max) {
    return message;
  }
  const tail = Math.floor(max / 4);
  const head = max - tail - 64;
  const omitted = message.length - head - tail;
  return `${message.slice(0, head)} [... ${omitted} characters omitted ...] ${message.slice(message.length - tail)}`;
}
