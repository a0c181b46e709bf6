import { bearerChallenge, parseScopes, RegistryTokenIssuer, scopesAllow } from './registry-token';
import { parsePushTarget } from './image-pusher';
import { selectPlatform } from './registry-client';

const SECRET = 'x'.repeat(32);

describe('registry tokens', () => {
  it('parses scopes, names with ports included, and formats the challenge', () => {
    expect(
      parseScopes(['repository:host:5000/a/b:pull,push', 'registry:catalog:* repository:c:pull', 'bad']),
    ).toEqual([
      { type: 'repository', name: 'host:5000/a/b', actions: ['pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
      { type: 'repository', name: 'c', actions: ['pull'] },
    ]);
    expect(
      bearerChallenge({
        realm: 'http://h/v2/token',
        service: 'stratum',
        scopes: [{ type: 'repository', name: 'a/b', actions: ['pull', 'push'] }],
      }),
    ).toBe('Bearer realm="http://h/v2/token",service="stratum",scope="repository:a/b:pull,push"');
  });

  it('issues tokens it verifies; refuses other keys, services, tampering and expiry', () => {
    const issuer = new RegistryTokenIssuer(SECRET, 'stratum', 60);
    const access = [{ type: 'repository', name: 'a', actions: ['pull'] }];
    const { token } = issuer.issue('alice', access, 1_000_000_000);
    expect(issuer.verify(token, 1_000_000_000)?.access).toEqual(access);
    expect(new RegistryTokenIssuer('y'.repeat(32), 'stratum', 60).verify(token, 1_000_000_000)).toBeNull();
    expect(new RegistryTokenIssuer(SECRET, 'other', 60).verify(token, 1_000_000_000)).toBeNull();
    const [h, , s] = token.split('.');
    const forged = Buffer.from(
      JSON.stringify({ access: [{ type: 'repository', name: 'a', actions: ['push'] }] }),
    ).toString('base64url');
    expect(issuer.verify(`${h}.${forged}.${s}`, 1_000_000_000)).toBeNull();
    expect(issuer.verify(token, 1_000_000_000 + 120_000)).toBeNull();
    expect(() => new RegistryTokenIssuer('short', 'stratum', 60)).toThrow();
  });

  it('checks every wanted action against the granted scopes', () => {
    const granted = [{ type: 'repository', name: 'a', actions: ['pull'] }];
    expect(scopesAllow(granted, { type: 'repository', name: 'a', actions: ['pull'] })).toBe(true);
    expect(scopesAllow(granted, { type: 'repository', name: 'a', actions: ['pull', 'push'] })).toBe(false);
    expect(scopesAllow(granted, { type: 'repository', name: 'b', actions: ['pull'] })).toBe(false);
  });
});

describe('parsePushTarget / selectPlatform', () => {
  it('tells our repositories from other registries', () => {
    expect(parsePushTarget('team/app')).toEqual({ kind: 'local', repository: 'team/app', tag: 'latest' });
    expect(parsePushTarget('reg.example.com:5443/team/app:v1')).toEqual({
      kind: 'remote',
      registry: 'reg.example.com:5443',
      repository: 'team/app',
      tag: 'v1',
    });
    expect(parsePushTarget('stratum.local:8080/a:b', ['stratum.local:8080'])).toMatchObject({
      kind: 'local',
    });
    expect(() => parsePushTarget(`a@sha256:${'0'.repeat(64)}`)).toThrow(/tag/);
    expect(() => parsePushTarget('Bad Name')).toThrow();
  });

  it('picks a platform out of an index', () => {
    const m = [
      { digest: 'a', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { digest: 'b', platform: { os: 'linux', architecture: 'amd64' } },
      { digest: 'c', platform: { os: 'unknown', architecture: 'unknown' } },
    ];
    expect(selectPlatform(m, { os: 'linux', architecture: 'amd64' })?.digest).toBe('b');
    expect(selectPlatform(m, { os: 'linux', architecture: 'arm64' })?.digest).toBe('a');
    expect(selectPlatform(m, { os: 'linux', architecture: 'arm64', variant: 'v7' })).toBeNull();
  });
});
