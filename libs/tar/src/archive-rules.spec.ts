import { ArchiveRules, whiteoutOf, type ArchiveRulesOptions } from './archive-rules';
import { TarError } from './tar-error';
import type { TarEntryType } from './tar-format';

interface E {
  path: string;
  type?: TarEntryType;
  linkpath?: string;
}

/** Checks the entries in order; returns the first refusal's code and entry, or 'ok'. */
function run(entries: E[], options: ArchiveRulesOptions = {}): string {
  const rules = new ArchiveRules(options);
  for (const e of entries) {
    try {
      rules.check({ path: e.path, type: e.type ?? 'file', linkpath: e.linkpath ?? '' });
    } catch (err) {
      expect(err).toBeInstanceOf(TarError);
      const t = err as TarError;
      expect(t.message).toContain(JSON.stringify(e.path));
      return `${t.code} ${t.entry ?? ''}`;
    }
  }
  return 'ok';
}

describe('ArchiveRules', () => {
  it('accepts ordinary trees, absolute names (root-relative) and symlinks that stay inside', () => {
    expect(
      run([
        { path: './', type: 'dir' },
        { path: 'a/', type: 'dir' },
        { path: 'a/f' },
        { path: '/abs/file' },
        { path: 'a/b/../g' },
        { path: 'root', type: 'symlink', linkpath: '/' },
        { path: 'root/etc/x' }, // "/" is the archive's root: lands in etc/x
        { path: 'up', type: 'symlink', linkpath: '../a' }, // dangling outside is fine: never followed by us
        { path: 'in', type: 'symlink', linkpath: 'a' },
        { path: 'in/h', type: 'link', linkpath: 'a/f' },
        { path: 'a/f2', type: 'link', linkpath: 'in/f' },
      ]),
    ).toBe('ok');
  });

  it.each<[string, E[], string]>([
    ['.. above the root', [{ path: '../x' }], 'TAR_PATH_ESCAPE ../x'],
    ['deep .. above the root', [{ path: 'a/../../../x' }], 'TAR_PATH_ESCAPE a/../../../x'],
    [
      'a file through a symlink that climbs out',
      [{ path: 'up', type: 'symlink', linkpath: '../../..' }, { path: 'up/tmp/x' }],
      'TAR_PATH_ESCAPE up/tmp/x',
    ],
    [
      'a chain of symlinks that climbs out',
      [
        { path: 'd/', type: 'dir' },
        { path: 'd/l', type: 'symlink', linkpath: '..' },
        { path: 'm', type: 'symlink', linkpath: 'd/l/..' },
        { path: 'm/x' },
      ],
      'TAR_PATH_ESCAPE m/x',
    ],
    [
      'a symlink loop',
      [
        { path: 'a', type: 'symlink', linkpath: 'b' },
        { path: 'b', type: 'symlink', linkpath: 'a' },
        { path: 'a/x' },
      ],
      'TAR_PATH_ESCAPE a/x',
    ],
    ['a hard link out with ..', [{ path: 'o', type: 'link', linkpath: '../sentinel' }], 'TAR_PATH_ESCAPE o'],
    [
      'a hard link to a host path (taken from the root: missing)',
      [{ path: 'pw', type: 'link', linkpath: '/etc/passwd' }],
      'TAR_LINK_TARGET_MISSING pw',
    ],
    [
      'a hard link to a later entry',
      [{ path: 'l', type: 'link', linkpath: 'f' }, { path: 'f' }],
      'TAR_LINK_TARGET_MISSING l',
    ],
    [
      'a hard link to a directory',
      [
        { path: 'd/', type: 'dir' },
        { path: 'l', type: 'link', linkpath: 'd' },
      ],
      'TAR_UNSUPPORTED_ENTRY l',
    ],
    ['a hard link to the root', [{ path: 'l', type: 'link', linkpath: './' }], 'TAR_UNSUPPORTED_ENTRY l'],
    ['a path through a file', [{ path: 'f' }, { path: 'f/x' }], 'TAR_NOT_A_DIRECTORY f/x'],
    ['a NUL in a name', [{ path: 'a\0b' }], 'TAR_INVALID a\0b'],
  ])('refuses %s, naming the entry', (_name, entries, expected) => {
    expect(run(entries)).toBe(expected);
  });

  it('refuses devices only when told to', () => {
    const dev: E[] = [
      { path: 'dev/sda', type: 'block' },
      { path: 'null', type: 'char' },
    ];
    expect(run(dev)).toBe('ok');
    expect(run(dev, { devices: 'reject' })).toBe('TAR_UNSUPPORTED_ENTRY dev/sda');
    expect(run([{ path: 'p', type: 'fifo' }], { devices: 'reject' })).toBe('ok');
  });

  it('replaces an entry by a later one of the same name, as the extractor does', () => {
    expect(
      run([
        { path: 'x', type: 'symlink', linkpath: '../..' },
        { path: 'x', type: 'dir' },
        { path: 'x/f' },
        { path: 'y', type: 'dir' },
        { path: 'y', type: 'symlink', linkpath: '../..' },
        { path: 'y/f' },
      ]),
    ).toBe('TAR_PATH_ESCAPE y/f');
  });

  it('in a layer, reads .wh.* as whiteouts that remove nothing of the layer; in a plain archive, as files', () => {
    const entries: E[] = [
      { path: 'a/f' },
      { path: 'a/.wh.f' },
      { path: 'a/.wh..wh..opq' },
      { path: 'l', type: 'link', linkpath: 'a/f' },
    ];
    expect(run(entries)).toBe('ok');
    expect(run(entries, { kind: 'plain' })).toBe('ok');
    // A plain archive's `.wh.f` is a file a later hard link may name; in a layer it is no entry.
    const linkToWh: E[] = [{ path: '.wh.f' }, { path: 'l', type: 'link', linkpath: '.wh.f' }];
    expect(run(linkToWh, { kind: 'plain' })).toBe('ok');
    expect(run(linkToWh)).toBe('TAR_LINK_TARGET_MISSING l');
    expect(run([{ path: 'a/.wh..' }])).toBe('TAR_PATH_ESCAPE a/.wh..');
    expect(run([{ path: 'a/.wh..' }], { kind: 'plain' })).toBe('ok');
  });
});

describe('whiteoutOf', () => {
  it('classifies whiteout names', () => {
    expect(whiteoutOf('file', 'file')).toBeUndefined();
    expect(whiteoutOf('.wh..wh..opq', 'x')).toEqual({ kind: 'opaque' });
    expect(whiteoutOf('.wh..wh.plnk', 'x')).toEqual({ kind: 'meta' });
    expect(whiteoutOf('.wh.foo', 'x')).toEqual({ kind: 'name', name: 'foo' });
    expect(() => whiteoutOf('.wh.', 'd/.wh.')).toThrow(/invalid name/);
  });
});
