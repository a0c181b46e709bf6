import { isErrorCode, ERROR_STATUS, StratumError } from '@stratum/contracts';
import { OciError } from '@stratum/oci';
import { StorageError } from '@stratum/storage';

/**
 * Error codes of the OCI distribution spec, plus the few that docker/distribution adds and
 * clients know (TAG_INVALID, RANGE_INVALID, PAGINATION_NUMBER_INVALID, UNAVAILABLE).
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
export const REGISTRY_ERROR_STATUS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 415,
  TOOMANYREQUESTS: 429,
  TAG_INVALID: 400,
  /** A chunk that does not start at the upload's offset, or an unsatisfiable Range (spec: 416). */
  RANGE_INVALID: 416,
  PAGINATION_NUMBER_INVALID: 400,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
} as const;

/** One of the codes in {@link REGISTRY_ERROR_STATUS}. */
export type RegistryErrorCode = keyof typeof REGISTRY_ERROR_STATUS;

/** A registry failure with an OCI error code; `status` overrides the code's default HTTP status. */
export class RegistryError extends Error {
  readonly status: number;
  /** Response headers the answer must carry (`WWW-Authenticate` on a 401). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly detail?: unknown,
    options?: { status?: number; cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.status = options?.status ?? REGISTRY_ERROR_STATUS[code];
    this.headers = options?.headers ?? {};
  }
}

/** The body the spec prescribes for every error: `{"errors":[{code,message,detail}]}`. */
export interface RegistryErrorBody {
  readonly errors: { readonly code: string; readonly message: string; readonly detail?: unknown }[];
}

/** What a failure answers on the wire. `internal` marks the ones worth logging. */
export interface RegistryErrorResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: RegistryErrorBody;
  readonly internal: boolean;
}

/**
 * Maps anything thrown under /v2/ to the spec's error body: {@link RegistryError} as is, the
 * storage and oci libs' coded errors to their OCI codes, other coded Stratum errors through
 * ERROR_STATUS, anything else to 500 UNKNOWN (message hidden).
 */
export function toRegistryErrorResponse(err: unknown): RegistryErrorResponse {
  const e = toRegistryError(err);
  if (e === null) {
    return {
      status: 500,
      headers: {},
      body: { errors: [{ code: 'UNKNOWN', message: 'internal error' }] },
      internal: true,
    };
  }
  const entry =
    e.detail === undefined
      ? { code: e.code, message: e.message }
      : { code: e.code, message: e.message, detail: e.detail };
  return { status: e.status, headers: e.headers, body: { errors: [entry] }, internal: e.status >= 500 };
}

/** The {@link RegistryError} equivalent of a known error, or null for an unexpected one. */
export function toRegistryError(err: unknown): RegistryError | null {
  if (err instanceof RegistryError) {
    return err;
  }
  if (err instanceof StorageError) {
    switch (err.code) {
      case 'BLOB_TOO_LARGE':
        return new RegistryError('SIZE_INVALID', err.message, undefined, { status: 413, cause: err });
      case 'BLOB_CORRUPT':
        // Quarantined: the registry no longer holds the blob, which is what clients act on.
        return new RegistryError(
          'BLOB_UNKNOWN',
          err.message,
          { quarantined: true },
          { status: 404, cause: err },
        );
      case 'TAG_IMMUTABLE':
        // DENIED is the OCI code clients print ("denied: tag team/app:v1 is immutable …").
        return new RegistryError('DENIED', err.message, undefined, { status: 409, cause: err });
      case 'QUOTA_EXCEEDED':
        // Distribution's answer to a write it refuses; the message names repository, pattern, used and limit.
        return new RegistryError(
          'DENIED',
          err.message,
          { ...(err as { detail?: object }).detail },
          { status: 403, cause: err },
        );
      case 'BLOB_UNKNOWN':
      case 'DIGEST_INVALID':
      case 'SIZE_INVALID':
      case 'RANGE_INVALID':
      case 'NAME_INVALID':
      case 'MANIFEST_UNKNOWN':
      case 'TAG_INVALID':
      case 'UNAVAILABLE':
        return new RegistryError(err.code, err.message, undefined, { cause: err });
    }
  }
  if (err instanceof OciError) {
    switch (err.code) {
      case 'DIGEST_INVALID':
      case 'MANIFEST_INVALID':
        return new RegistryError(err.code, err.message, undefined, { cause: err });
      case 'MANIFEST_UNSUPPORTED':
        return new RegistryError('UNSUPPORTED', err.message, undefined, { cause: err });
      case 'REFERENCE_INVALID':
        return new RegistryError('NAME_INVALID', err.message, undefined, { cause: err });
      case 'JSON_INVALID':
        return new RegistryError('MANIFEST_INVALID', err.message, undefined, { cause: err });
    }
  }
  if (err instanceof StratumError && isErrorCode(err.code)) {
    const status = ERROR_STATUS[err.code];
    const code: RegistryErrorCode =
      err.code in REGISTRY_ERROR_STATUS
        ? (err.code as RegistryErrorCode)
        : status >= 500
          ? 'UNKNOWN'
          : 'UNSUPPORTED';
    return new RegistryError(code, err.message, err.detail, { status, cause: err });
  }
  return null;
}
