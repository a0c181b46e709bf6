import { isRepositoryName } from '@stratum/storage';
import { RegistryError } from './registry-error';

/**
 * One endpoint of the distribution API, parsed from the path after `/v2/`.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#endpoints
 *
 * Repository names contain slashes (`team/app/web`) and may even contain a component called
 * `manifests` or `blobs`, so the suffix is matched at the *end* of the path with a greedy name:
 * `/v2/a/manifests/b/manifests/latest` is the repository `a/manifests/b`, reference `latest`.
 */
export type RegistryRoute =
  | { readonly kind: 'base' }
  /** The Docker token endpoint, `/v2/token` (not a distribution endpoint; no repository ends in `/token`-only paths). */
  | { readonly kind: 'token' }
  | { readonly kind: 'catalog' }
  | { readonly kind: 'tags'; readonly name: string }
  | { readonly kind: 'manifest'; readonly name: string; readonly reference: string }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: string }
  | { readonly kind: 'uploads'; readonly name: string }
  | { readonly kind: 'upload'; readonly name: string; readonly uploadId: string }
  | { readonly kind: 'referrers'; readonly name: string; readonly digest: string };

/** What a request to a route wants to do, for authorization hooks. */
export type RegistryAction = 'pull' | 'push' | 'delete' | 'catalog';

const PATTERNS: [RegExp, (m: RegExpExecArray) => RegistryRoute][] = [
  [/^_catalog$/, () => ({ kind: 'catalog' })],
  [/^(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1] ?? '' })],
  [/^(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: 'uploads', name: m[1] ?? '' })],
  [/^(.+)\/blobs\/uploads\/([^/]+)$/, (m) => ({ kind: 'upload', name: m[1] ?? '', uploadId: m[2] ?? '' })],
  [/^(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1] ?? '', digest: m[2] ?? '' })],
  [/^(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1] ?? '', reference: m[2] ?? '' })],
  [/^(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1] ?? '', digest: m[2] ?? '' })],
];

/**
 * Parses the part of a request path after `/v2/` (percent-encoded, as on the wire).
 * Returns null for a path that is no endpoint at all (the caller answers 404);
 * throws NAME_INVALID when the endpoint is recognised but the repository name is not valid.
 */
export function parseRegistryPath(rest: string): RegistryRoute | null {
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    return null;
  }
  if (path === '' || path === '/') {
    return { kind: 'base' };
  }
  if (path === 'token') {
    return { kind: 'token' };
  }
  for (const [pattern, build] of PATTERNS) {
    const m = pattern.exec(path);
    if (m) {
      const route = build(m);
      if ('name' in route && !isRepositoryName(route.name)) {
        throw new RegistryError('NAME_INVALID', `invalid repository name: ${JSON.stringify(route.name)}`, {
          name: route.name,
        });
      }
      return route;
    }
  }
  return null;
}

/** The action an HTTP method performs on a route (null for the base endpoint: anyone may probe it). */
export function routeAction(route: RegistryRoute, method: string): RegistryAction | null {
  const m = method.toUpperCase();
  switch (route.kind) {
    case 'base':
    case 'token':
      return null;
    case 'catalog':
      return 'catalog';
    case 'tags':
    case 'referrers':
      return 'pull';
    case 'manifest':
    case 'blob':
      return m === 'DELETE' ? 'delete' : m === 'GET' || m === 'HEAD' ? 'pull' : 'push';
    case 'uploads':
    case 'upload':
      return 'push';
  }
}
