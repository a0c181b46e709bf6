import { createHash } from 'node:crypto';
import { Sha256Digest } from './digest';
import { OciError } from './oci-error';

/**
 * Canonical JSON as the OCI image spec recommends and Docker's `canonical/json` writes:
 * object keys sorted (by code point, i.e. UTF-8 byte order, like Go), no insignificant
 * whitespace, integers only (no floats), no HTML escaping (`<`, `>`, `&` stay as is).
 * https://github.com/opencontainers/image-spec/blob/main/considerations.md#json
 * https://wiki.laptop.org/go/Canonical_JSON
 *
 * One deliberate difference with OLPC canonical JSON: control characters in strings are escaped
 * (`\n`, `\u0000`), so the output is valid RFC 8259 JSON (history entries hold multi-line RUNs).
 * `undefined` members are omitted and `toJSON` is honoured, like `JSON.stringify`.
 * Throws {@link OciError} JSON_INVALID for non-integers, cycles, bigints, functions and symbols.
 */
export function canonicalJson(value: unknown): string {
  const seen = new Set<object>();
  const out = write(value, seen);
  if (out === undefined) {
    throw new OciError('JSON_INVALID', 'value has no JSON representation');
  }
  return out;
}

function compareCodePoints(a: string, b: string): number {
  // UTF-16 code unit order differs from code point order only above U+D7FF; compare properly.
  const ai = a[Symbol.iterator]();
  const bi = b[Symbol.iterator]();
  for (;;) {
    const x = ai.next();
    const y = bi.next();
    if (x.done === true || y.done === true) {
      return (x.done === true ? 0 : 1) - (y.done === true ? 0 : 1);
    }
    const d = (x.value.codePointAt(0) ?? 0) - (y.value.codePointAt(0) ?? 0);
    if (d !== 0) {
      return d;
    }
  }
}

function write(value: unknown, seen: Set<object>): string | undefined {
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  ) {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) {
        throw new OciError('JSON_INVALID', `canonical JSON allows only safe integers, got ${value}`);
      }
      return Object.is(value, -0) ? '0' : String(value);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'bigint':
      throw new OciError('JSON_INVALID', 'bigint has no JSON representation');
    case 'object': {
      if (value === null) {
        return 'null';
      }
      if (seen.has(value)) {
        throw new OciError('JSON_INVALID', 'cyclic value');
      }
      seen.add(value);
      try {
        if (Array.isArray(value)) {
          return `[${value.map((v: unknown) => write(v, seen) ?? 'null').join(',')}]`;
        }
        const members: string[] = [];
        for (const key of Object.keys(value).sort(compareCodePoints)) {
          const v = write((value as Record<string, unknown>)[key], seen);
          if (v !== undefined) {
            members.push(`${JSON.stringify(key)}:${v}`);
          }
        }
        return `{${members.join(',')}}`;
      } finally {
        seen.delete(value);
      }
    }
  }
}

/** Encoded JSON ready to store: the bytes, their sha256 digest and size. */
export interface EncodedJson {
  readonly bytes: Buffer;
  readonly digest: Sha256Digest;
  readonly size: number;
}

/**
 * Encodes a manifest or config for storage. Canonical by default, so the same content always
 * gets the same digest (a rebuild with unchanged inputs produces identical image IDs).
 */
export function encodeJson(value: unknown, options: { canonical?: boolean } = {}): EncodedJson {
  const text = options.canonical === false ? JSON.stringify(value) : canonicalJson(value);
  if (typeof text !== 'string') {
    throw new OciError('JSON_INVALID', 'value has no JSON representation');
  }
  const bytes = Buffer.from(text, 'utf8');
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length };
}
