import { resolveSubmoduleUrl, submoduleTransport } from './git-submodules';

describe('resolveSubmoduleUrl (git submodule init rules)', () => {
  it('resolves ./ and ../ against the parent URL taken as a directory', () => {
    expect(resolveSubmoduleUrl('https://h/org/app.git', '../lib.git')).toBe('https://h/org/lib.git');
    expect(resolveSubmoduleUrl('https://h/org/app.git/', './sub.git')).toBe('https://h/org/app.git/sub.git');
    expect(resolveSubmoduleUrl('https://h/org/app.git', '../../other/lib')).toBe('https://h/other/lib');
    expect(resolveSubmoduleUrl('git@h:org/app.git', '../lib.git')).toBe('git@h:org/lib.git');
    expect(resolveSubmoduleUrl('git@h:org/app.git', '../../lib.git')).toBe('git@h:lib.git');
    expect(resolveSubmoduleUrl('file:///srv/git/app.git', '../lib.git')).toBe('file:///srv/git/lib.git');
  });

  it('takes an absolute URL as written; refuses one climbing above the host', () => {
    expect(resolveSubmoduleUrl('https://h/org/app.git', 'https://x/y.git')).toBe('https://x/y.git');
    expect(() => resolveSubmoduleUrl('https://h/app.git', '../../../x.git')).toThrow(/climbs above/);
  });
});

describe('submoduleTransport', () => {
  it('names the transport git would use; a local path is file', () => {
    expect(submoduleTransport('https://h/x.git')).toBe('https');
    expect(submoduleTransport('git@h:o/x.git')).toBe('ssh');
    expect(submoduleTransport('SSH://h/x.git')).toBe('ssh');
    expect(submoduleTransport('/srv/x.git')).toBe('file');
    expect(submoduleTransport('../x.git')).toBe('file');
    expect(submoduleTransport('ext::sh -c id')).toBe('ext::');
  });
});
