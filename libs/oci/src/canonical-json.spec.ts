import { createHash } from 'node:crypto';
import { canonicalJson, encodeJson } from './canonical-json';
import { OciError } from './oci-error';

describe('canonicalJson', () => {
  it('sorts keys recursively and drops whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}',
    );
  });

  it('is independent of insertion order', () => {
    expect(canonicalJson({ x: 1, y: 2 })).toBe(canonicalJson({ y: 2, x: 1 }));
  });

  it('sorts by code point like Go, not by UTF-16 code unit', () => {
    // U+FF5E (BMP, after the surrogate range) sorts before U+1F600 by code point,
    // but after it by UTF-16 code unit (0xD83D < 0xFF5E).
    const obj = { '\u{1F600}': 1, '\uFF5E': 2, B: 3, a: 4 };
    expect(canonicalJson(obj)).toBe('{"B":3,"a":4,"\uFF5E":2,"\u{1F600}":1}');
  });

  it('escapes only what JSON needs: no HTML escaping, control characters escaped', () => {
    expect(canonicalJson({ s: '<a&b>' })).toBe('{"s":"<a&b>"}');
    expect(canonicalJson('RUN a \\\n  && b "q"\t')).toBe('"RUN a \\\\\\n  && b \\"q\\"\\t"');
    expect(canonicalJson('é')).toBe('"é"');
  });

  it('omits undefined members, writes null in arrays, honours toJSON', () => {
    expect(canonicalJson({ a: undefined, b: [undefined, 1] })).toBe('{"b":[null,1]}');
    expect(canonicalJson({ t: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) })).toBe(
      '{"t":"2024-01-02T03:04:05.000Z"}',
    );
  });

  it('refuses floats, non-finite numbers, bigints and cycles', () => {
    expect(() => canonicalJson(1.5)).toThrow(OciError);
    expect(() => canonicalJson(Number.NaN)).toThrow(OciError);
    expect(() => canonicalJson(2 ** 60)).toThrow(OciError);
    expect(() => canonicalJson(10n)).toThrow(OciError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cyclic/);
    expect(() => canonicalJson(undefined)).toThrow(OciError);
    // A shared (non-cyclic) sub-object is fine.
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });

  it('writes -0 as 0', () => {
    expect(canonicalJson(-0)).toBe('0');
  });
});

describe('encodeJson', () => {
  it('returns bytes, digest and size of the canonical form', () => {
    const e = encodeJson({ schemaVersion: 2, config: { size: 2 } });
    expect(e.bytes.toString()).toBe('{"config":{"size":2},"schemaVersion":2}');
    expect(e.size).toBe(e.bytes.length);
    expect(e.digest).toBe(`sha256:${createHash('sha256').update(e.bytes).digest('hex')}`);
  });

  it('gives equal digests for equal content', () => {
    expect(encodeJson({ a: 1, b: 2 }).digest).toBe(encodeJson({ b: 2, a: 1 }).digest);
  });

  it('can keep insertion order when asked', () => {
    expect(encodeJson({ b: 1, a: 2 }, { canonical: false }).bytes.toString()).toBe('{"b":1,"a":2}');
    expect(encodeJson('é').size).toBe(4);
  });
});
