import { OciError } from './oci-error';
import { formatReference, parseReference, tryParseReference, withDefaultRegistry } from './reference';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['alpine', { registry: null, repository: 'alpine', tag: 'latest', digest: null }],
    ['alpine:3.20', { registry: null, repository: 'alpine', tag: '3.20', digest: null }],
    ['library/alpine:edge', { registry: null, repository: 'library/alpine', tag: 'edge', digest: null }],
    [`alpine@${D}`, { registry: null, repository: 'alpine', tag: null, digest: D }],
    [`alpine:3@${D}`, { registry: null, repository: 'alpine', tag: '3', digest: D }],
    ['localhost/app', { registry: 'localhost', repository: 'app', tag: 'latest', digest: null }],
    [
      'localhost:5000/team/app:v1',
      { registry: 'localhost:5000', repository: 'team/app', tag: 'v1', digest: null },
    ],
    [
      `registry.example.com:8443/ns/sub/name:tag_1.0-rc@${D}`,
      { registry: 'registry.example.com:8443', repository: 'ns/sub/name', tag: 'tag_1.0-rc', digest: D },
    ],
    ['ghcr.io/org/app', { registry: 'ghcr.io', repository: 'org/app', tag: 'latest', digest: null }],
    ['myhost:5000/app', { registry: 'myhost:5000', repository: 'app', tag: 'latest', digest: null }],
    ['[::1]:5000/app:1', { registry: '[::1]:5000', repository: 'app', tag: '1', digest: null }],
    ['Registry/app', { registry: 'Registry', repository: 'app', tag: 'latest', digest: null }],
    ['team/app', { registry: null, repository: 'team/app', tag: 'latest', digest: null }],
    ['localhost:5000', { registry: null, repository: 'localhost', tag: '5000', digest: null }],
  ])('parses %s', (ref, expected) => {
    expect(parseReference(ref)).toEqual(expected);
  });

  it.each([
    '',
    'Alpine',
    'team/App',
    'alpine:',
    ':tag',
    'alpine::tag',
    'alpine:-bad',
    `alpine:${'t'.repeat(129)}`,
    'alpine@sha256:abc',
    `alpine@md5:${'a'.repeat(32)}`,
    `alpine@@${D}`,
    'a//b',
    '/alpine',
    'alpine/',
    'registry.example.com/',
    'registry.example.com:port/app',
    '-host.com/app',
    'a..b/c/d',
    'a/b..c',
    '_a/b',
    // '.' makes the first component a host, and '_' is not allowed in host names.
    'a.b-c__d/e',
    'my-app_1.x/thing',
    'has space',
    `${'a'.repeat(256)}`,
    `example.com/${'a'.repeat(250)}`,
  ])('rejects %j with REFERENCE_INVALID', (ref) => {
    try {
      parseReference(ref);
      throw new Error('expected a rejection');
    } catch (err) {
      expect(err).toBeInstanceOf(OciError);
      expect((err as OciError).code).toBe('REFERENCE_INVALID');
    }
    expect(tryParseReference(ref)).toBeNull();
  });

  it('accepts the longest valid tag', () => {
    expect(parseReference(`a:${'t'.repeat(128)}`).tag).toHaveLength(128);
  });
});

describe('formatReference and withDefaultRegistry', () => {
  it('round-trips', () => {
    for (const ref of ['localhost:5000/team/app:v1', `alpine@${D}`, `ghcr.io/o/a:1@${D}`]) {
      expect(formatReference(parseReference(ref))).toBe(ref);
    }
    expect(formatReference(parseReference('alpine'))).toBe('alpine:latest');
  });

  it("adds Docker Hub's library/ and default registry", () => {
    expect(withDefaultRegistry(parseReference('alpine'))).toMatchObject({
      registry: 'docker.io',
      repository: 'library/alpine',
    });
    expect(withDefaultRegistry(parseReference('index.docker.io/nginx'))).toMatchObject({
      registry: 'docker.io',
      repository: 'library/nginx',
    });
    expect(withDefaultRegistry(parseReference('team/app'))).toMatchObject({
      registry: 'docker.io',
      repository: 'team/app',
    });
    expect(withDefaultRegistry(parseReference('app'), 'stratum.local:8080')).toMatchObject({
      registry: 'stratum.local:8080',
      repository: 'app',
    });
    expect(withDefaultRegistry(parseReference('ghcr.io/app'))).toMatchObject({
      registry: 'ghcr.io',
      repository: 'app',
    });
  });
});
