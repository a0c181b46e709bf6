import { formatPlatform, parsePlatform, parsePlatformList, platformMatches } from './platform';

describe('parsePlatform', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['LINUX/ARM64', 'linux/arm64'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/arm', 'linux/arm/v7'],
    ['arm/v6', 'linux/arm/v6'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/riscv64', 'linux/riscv64'],
  ])('%s is %s', (text, want) => {
    expect(formatPlatform(parsePlatform(text))).toBe(want);
  });

  it.each([
    ['', /not os\/arch/],
    ['linux/', /not os\/arch/],
    ['windows/amd64', /only linux/],
    ['linux/sparc', /unknown architecture "sparc"/],
    ['linux/arm64/v9', /arm64 has no variant "v9"/],
    ['linux/arm/v9', /arm has no variant/],
    ['linux/amd64/v7', /amd64 has no variant/],
    ['linux/s390x/v1', /s390x has no variant/],
    ['a/b/c/d', /not os\/arch/],
  ])('refuses %j', (text, err) => {
    expect(() => parsePlatform(text)).toThrow(err);
  });
});

describe('parsePlatformList', () => {
  it('normalises, drops duplicates and keeps order', () => {
    expect(parsePlatformList('linux/arm64, amd64,linux/aarch64')).toEqual(['linux/arm64', 'linux/amd64']);
  });
  it('refuses an empty list, a bad entry, too many', () => {
    expect(() => parsePlatformList(' , ')).toThrow(/names no platform/);
    expect(() => parsePlatformList('linux/amd64,linux/foo')).toThrow(/"linux\/foo"/);
    expect(() => parsePlatformList('amd64,arm64,arm/v5,arm/v6,arm/v7,386,ppc64le,s390x,riscv64')).toThrow(
      /at most 8/,
    );
  });
});

describe('platformMatches', () => {
  it('compares os, architecture and a wanted variant', () => {
    expect(
      platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, parsePlatform('linux/arm64')),
    ).toBe(true);
    expect(
      platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, parsePlatform('linux/arm/v7')),
    ).toBe(false);
    expect(platformMatches({ os: 'linux', architecture: 'amd64' }, parsePlatform('linux/arm64'))).toBe(false);
    expect(platformMatches(undefined, parsePlatform('linux/amd64'))).toBe(false);
  });
});
