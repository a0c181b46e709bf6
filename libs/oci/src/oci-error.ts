/** Codes of {@link OciError}; the registry maps them to the distribution spec's error codes. */
export type OciErrorCode =
  'DIGEST_INVALID' | 'REFERENCE_INVALID' | 'MANIFEST_INVALID' | 'MANIFEST_UNSUPPORTED' | 'JSON_INVALID';

/** A malformed digest, reference, manifest or JSON value. */
export class OciError extends Error {
  constructor(
    readonly code: OciErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'OciError';
  }
}
