import { RegistryError } from './registry-error';

/** An inclusive byte range, as in HTTP. */
export interface InclusiveRange {
  readonly start: number;
  readonly end: number;
}

const NUM = /^\d{1,15}$/;

/**
 * Parses a request `Range` header against a blob of `size` bytes (RFC 9110 §14.1.2), single
 * range only. Returns null when the header is absent or not a single bytes range (the server
 * then answers the whole blob, which RFC 9110 allows); throws RANGE_INVALID (416) when the range
 * is well-formed but unsatisfiable.
 */
export function parseRangeHeader(header: string | undefined, size: number): InclusiveRange | null {
  if (header === undefined) {
    return null;
  }
  const m = /^bytes=([0-9]*)-([0-9]*)$/.exec(header.trim());
  if (!m) {
    return null;
  }
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') {
    return null;
  }
  if ((a !== '' && !NUM.test(a)) || (b !== '' && !NUM.test(b))) {
    return null;
  }
  let start: number;
  let end: number;
  if (a === '') {
    // Suffix range: the last N bytes.
    const n = Number(b);
    if (n === 0) {
      throw unsatisfiable(header, size);
    }
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) {
      return null; // syntactically invalid: ignore the header
    }
  }
  if (start >= size || end < start) {
    throw unsatisfiable(header, size);
  }
  return { start, end };
}

function unsatisfiable(header: string, size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', `range ${header} is not satisfiable for ${size} bytes`, { size });
}

/**
 * Parses a chunk's `Content-Range: <start>-<end>` (the distribution spec's form, no `bytes `
 * prefix; the prefixed RFC form is accepted too). Throws RANGE_INVALID when malformed.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-in-chunks
 */
export function parseContentRange(header: string | undefined): InclusiveRange | null {
  if (header === undefined || header.trim() === '') {
    return null;
  }
  const m = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!m) {
    throw new RegistryError('RANGE_INVALID', `malformed Content-Range: ${JSON.stringify(header)}`);
  }
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) {
    throw new RegistryError('RANGE_INVALID', `malformed Content-Range: ${JSON.stringify(header)}`);
  }
  return { start, end };
}

/**
 * The `Range` header of an upload holding `offset` bytes: `0-<last byte>`. Like
 * docker/distribution, an empty upload reports `0-0` (clients read it as "nothing yet" since
 * they track what they sent).
 */
export function uploadRangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}
