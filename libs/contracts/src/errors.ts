/**
 * Error codes every part of Stratum may raise, and the HTTP status each one maps to.
 * Domain errors carry a `code`; the API's global filter turns the code into the status.
 */
export const ERROR_STATUS = {
  // requests
  BAD_REQUEST: 400,
  CONTEXT_MISSING: 400,
  CONTEXT_INVALID: 400,
  CONTEXT_TOO_LARGE: 413,
  DOCKERFILE_MISSING: 400,
  DOCKERFILE_INVALID: 400,
  BUILD_UNKNOWN: 404,
  BUILD_FINISHED: 409,
  BUILD_FAILED: 422,
  /** A build asked for a platform no live worker can run (or an unknown platform string). */
  PLATFORM_UNAVAILABLE: 422,
  CONTAINER_UNKNOWN: 404,
  CONTAINER_STATE: 409,
  /** The worker holding a container's files has been gone past CONTAINER_WORKER_TIMEOUT_MS. */
  WORKER_GONE: 503,
  WORKER_UNKNOWN: 404,
  /** A live worker cannot be forgotten. */
  WORKER_LIVE: 409,
  IMAGE_UNKNOWN: 404,
  IMAGE_CONFLICT: 409,
  PUSH_UNKNOWN: 404,
  UNAUTHORIZED: 401,
  TOO_MANY_REQUESTS: 429,
  PROJECT_UNKNOWN: 404,
  PROJECT_EXISTS: 409,
  ROBOT_EXISTS: 409,
  ROBOT_UNKNOWN: 404,
  WEBHOOK_TOO_LARGE: 413,
  WEBHOOK_INVALID: 400,
  SECRET_TOO_LARGE: 413,
  SECRET_UNKNOWN: 404,
  GIT_FETCH_FAILED: 502,
  /** A git source's branch or tag is not on the remote. */
  GIT_REF_UNKNOWN: 400,
  /** A git source's checkout is larger than ADD_GIT_MAX_BYTES. */
  GIT_SOURCE_TOO_LARGE: 413,
  PULL_FAILED: 502,
  MAINTENANCE_BUSY: 409,
  DENIED: 403,
  // storage / registry (OCI distribution codes)
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  DIGEST_INVALID: 400,
  SIZE_INVALID: 400,
  BLOB_TOO_LARGE: 413,
  /** Stored bytes failed re-verification and were quarantined (a server-side fault). */
  BLOB_CORRUPT: 500,
  RANGE_INVALID: 416,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  TAG_INVALID: 400,
  TAG_IMMUTABLE: 409,
  /** REPOSITORY_QUOTAS: the write would take a pattern's repositories past their byte limit. */
  QUOTA_EXCEEDED: 403,
  UNSUPPORTED: 415,
  REFERENCE_INVALID: 400,
  MANIFEST_UNSUPPORTED: 415,
  JSON_INVALID: 400,
  // Dockerfiles
  DOCKERFILE_PARSE: 400,
  DOCKERFILE_EXPANSION: 400,
  DOCKERFILE_PLAN: 400,
  DOCKERFILE_LIMIT: 400,
  // layers (a tar given by a user)
  LAYER_INVALID: 400,
  LAYER_PATH_ESCAPE: 400,
  LAYER_INVALID_TAR: 400,
  LAYER_UNSUPPORTED_ENTRY: 400,
  LAYER_LINK_TARGET_MISSING: 400,
  LAYER_NOT_A_DIRECTORY: 400,
  LAYER_DIGEST_MISMATCH: 400,
  LAYER_TOO_MANY_ENTRIES: 413,
  // confinement (@stratum/confine): a user-given name or path that cannot become a path
  PATH_INVALID: 400,
  PATH_ESCAPE: 400,
  FILE_TOO_LARGE: 413,
  // infrastructure
  UNAVAILABLE: 503,
  CONFIG_INVALID: 500,
  INTERNAL: 500,
} as const;
export type ErrorCode = keyof typeof ERROR_STATUS;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_STATUS, code);
}

/** A domain error with a code: the message names the problem, the code decides the status. */
export class StratumError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly detail?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'StratumError';
  }
}

/** The JSON body of every REST API error. */
export interface ErrorBody {
  readonly statusCode: number;
  readonly code: string;
  readonly message: string;
  readonly detail?: Record<string, unknown>;
}

/**
 * Waits for every one of `promises` (none is left running behind a failure, which a caller's
 * cleanup could miss), then gives their values or throws the first failure.
 */
export async function settledAll<T extends readonly unknown[]>(
  promises: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(promises);
  for (const r of results) {
    if (r.status === 'rejected') {
      throw r.reason;
    }
  }
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}
