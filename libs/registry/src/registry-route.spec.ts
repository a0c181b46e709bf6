import { parseContentRange, parseRangeHeader, uploadRangeHeader } from './byte-range';
import { RegistryError } from './registry-error';
import { parseRegistryPath, routeAction } from './registry-route';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseRegistryPath', () => {
  it.each([
    ['', { kind: 'base' }],
    ['_catalog', { kind: 'catalog' }],
    ['a/b/c/tags/list', { kind: 'tags', name: 'a/b/c' }],
    ['a/b/manifests/latest', { kind: 'manifest', name: 'a/b', reference: 'latest' }],
    [`x/manifests/y/manifests/${D}`, { kind: 'manifest', name: 'x/manifests/y', reference: D }],
    [`ns/app/blobs/${D}`, { kind: 'blob', name: 'ns/app', digest: D }],
    [`ns/app/blobs/${encodeURIComponent(D)}`, { kind: 'blob', name: 'ns/app', digest: D }],
    ['ns/app/blobs/uploads/', { kind: 'uploads', name: 'ns/app' }],
    ['ns/app/blobs/uploads', { kind: 'uploads', name: 'ns/app' }],
    ['ns/blobs/uploads/blobs/uploads/', { kind: 'uploads', name: 'ns/blobs/uploads' }],
    ['ns/app/blobs/uploads/123', { kind: 'upload', name: 'ns/app', uploadId: '123' }],
    [`ns/app/referrers/${D}`, { kind: 'referrers', name: 'ns/app', digest: D }],
  ])('%s', (path, route) => {
    expect(parseRegistryPath(path)).toEqual(route);
  });

  it('returns null for paths that are no endpoint', () => {
    expect(parseRegistryPath('nothing/here')).toBeNull();
    expect(parseRegistryPath('a/manifests/')).toBeNull();
    expect(parseRegistryPath('%E0%A4%A')).toBeNull();
  });

  it('refuses invalid names with NAME_INVALID', () => {
    for (const path of ['Upper/manifests/x', '-a/tags/list', 'a//b/blobs/uploads/', '../x/manifests/y']) {
      expect(() => parseRegistryPath(path)).toThrow(RegistryError);
    }
  });

  it('tells the action of a request', () => {
    const m = parseRegistryPath('a/manifests/x')!;
    expect(routeAction(m, 'GET')).toBe('pull');
    expect(routeAction(m, 'HEAD')).toBe('pull');
    expect(routeAction(m, 'PUT')).toBe('push');
    expect(routeAction(m, 'DELETE')).toBe('delete');
    expect(routeAction(parseRegistryPath('a/blobs/uploads/')!, 'POST')).toBe('push');
    expect(routeAction(parseRegistryPath('_catalog')!, 'GET')).toBe('catalog');
    expect(routeAction(parseRegistryPath('')!, 'GET')).toBeNull();
  });
});

describe('byte ranges', () => {
  it('parses Range headers', () => {
    expect(parseRangeHeader(undefined, 10)).toBeNull();
    expect(parseRangeHeader('bytes=0-4', 10)).toEqual({ start: 0, end: 4 });
    expect(parseRangeHeader('bytes=5-', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRangeHeader('bytes=5-100', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRangeHeader('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
    expect(parseRangeHeader('bytes=-30', 10)).toEqual({ start: 0, end: 9 });
    expect(parseRangeHeader('bytes=0-1,4-5', 10)).toBeNull();
    expect(parseRangeHeader('items=0-1', 10)).toBeNull();
    expect(parseRangeHeader('bytes=4-2', 10)).toBeNull();
    expect(() => parseRangeHeader('bytes=10-', 10)).toThrow(RegistryError);
    expect(() => parseRangeHeader('bytes=-0', 10)).toThrow(RegistryError);
  });

  it('parses chunk Content-Range headers', () => {
    expect(parseContentRange(undefined)).toBeNull();
    expect(parseContentRange('0-99')).toEqual({ start: 0, end: 99 });
    expect(parseContentRange('bytes 100-199/*')).toEqual({ start: 100, end: 199 });
    expect(() => parseContentRange('5-1')).toThrow(RegistryError);
    expect(() => parseContentRange('abc')).toThrow(RegistryError);
  });

  it('formats the upload Range header like distribution', () => {
    expect(uploadRangeHeader(0)).toBe('0-0');
    expect(uploadRangeHeader(1)).toBe('0-0');
    expect(uploadRangeHeader(100)).toBe('0-99');
  });
});
