import { BlobVerifier, resolveRange } from './blob-verifier';
import { isBlobDigest, parseBlobDigest } from './digest';
import { assertRepositoryName, assertTagName, isRepositoryName, isTagName } from './repository-store';
import { StorageError } from './storage-error';

describe('repository and tag names', () => {
  it.each(['a', 'library/alpine', 'a.b/c-d/e__f', 'a--b', 'x0/y1/z2', 'a'.repeat(255)])('accepts %j', (n) => {
    expect(isRepositoryName(n)).toBe(true);
    expect(assertRepositoryName(n)).toBe(n);
  });

  it.each([
    '',
    'A',
    '../x',
    'a//b',
    'a/',
    '/a',
    'a/./b',
    'a..b',
    'a___b',
    'a.-b',
    '_a',
    'a/_tags',
    'a'.repeat(256),
  ])('rejects %j with NAME_INVALID', (n) => {
    expect(isRepositoryName(n)).toBe(false);
    expect(() => assertRepositoryName(n)).toThrow(expect.objectContaining({ code: 'NAME_INVALID' }) as Error);
  });

  it('validates tags', () => {
    expect(isTagName('latest')).toBe(true);
    expect(isTagName('_x.Y-1')).toBe(true);
    expect(isTagName('t'.repeat(128))).toBe(true);
    for (const bad of ['', '.x', '-x', 'a/b', 'a:b', 't'.repeat(129)]) {
      expect(isTagName(bad)).toBe(false);
      expect(() => assertTagName(bad)).toThrow(StorageError);
    }
  });
});

describe('digest helper', () => {
  it('accepts only sha256 lowercase hex', () => {
    const ok = `sha256:${'0'.repeat(64)}`;
    expect(parseBlobDigest(ok).hex).toBe('0'.repeat(64));
    expect(isBlobDigest(ok)).toBe(true);
    expect(isBlobDigest(`sha512:${'0'.repeat(128)}`)).toBe(false);
    expect(() => parseBlobDigest('sha256:../..')).toThrow(
      expect.objectContaining({ code: 'DIGEST_INVALID' }) as Error,
    );
  });
});

describe('BlobVerifier', () => {
  it('enforces maxBytes and expectedSize on the first byte too many', () => {
    const v = new BlobVerifier({ maxBytes: 4 });
    v.update(Buffer.alloc(4));
    expect(() => v.update(Buffer.alloc(1))).toThrow(
      expect.objectContaining({ code: 'BLOB_TOO_LARGE' }) as Error,
    );
    const s = new BlobVerifier({ expectedSize: 2 });
    expect(() => s.update(Buffer.alloc(3))).toThrow(
      expect.objectContaining({ code: 'SIZE_INVALID' }) as Error,
    );
  });

  it('refuses inconsistent options up front', () => {
    expect(() => new BlobVerifier({ expectedSize: 10, maxBytes: 5 })).toThrow(
      expect.objectContaining({ code: 'BLOB_TOO_LARGE' }) as Error,
    );
    expect(() => new BlobVerifier({ expectedSize: -1 })).toThrow(StorageError);
    expect(() => new BlobVerifier({ expectedDigest: 'sha256:x' })).toThrow(
      expect.objectContaining({ code: 'DIGEST_INVALID' }) as Error,
    );
  });
});

describe('resolveRange', () => {
  it('clamps the end and rejects unsatisfiable ranges', () => {
    expect(resolveRange(10, undefined)).toBeNull();
    expect(resolveRange(10, { start: 2, end: 100 })).toEqual({ start: 2, end: 9 });
    for (const r of [
      { start: 10, end: 10 },
      { start: 3, end: 2 },
      { start: -1, end: 2 },
      { start: 0.5, end: 2 },
    ]) {
      expect(() => resolveRange(10, r)).toThrow(expect.objectContaining({ code: 'RANGE_INVALID' }) as Error);
    }
    expect(() => resolveRange(0, { start: 0, end: 0 })).toThrow(StorageError);
  });
});
