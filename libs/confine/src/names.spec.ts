import { checkFileName, checkName, isSafeName, nameBeneath, opaqueName, opaquePath } from './names';

describe('opaqueName', () => {
  it('maps any key, hostile or not, to 64 hex digits', () => {
    for (const key of ['..', '../..', '/', '', '\0', 'a/../../b', 'x'.repeat(100_000), 'npm', '.']) {
      expect(opaqueName(key)).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('is a function of the key: equal keys share, different keys do not', () => {
    expect(opaqueName('npm')).toBe(opaqueName('npm'));
    expect(opaqueName('npm')).not.toBe(opaqueName('npm '));
    expect(opaqueName('..')).not.toBe(opaqueName('.'));
  });

  it('opaquePath is exactly one level below its root', () => {
    expect(opaquePath('/data/run-cache', '../..')).toBe(`/data/run-cache/${opaqueName('../..')}`);
  });
});

describe('checkFileName', () => {
  it('keeps any one file name as written', () => {
    for (const n of ['file.txt', 'my file', '-x', '.hidden', '..x', 'ü'.repeat(127)]) {
      expect(checkFileName(n)).toBe(n);
    }
  });

  it.each([[''], ['.'], ['..'], ['a/b'], ['/'], ['a\0b'], ['ü'.repeat(128)]])('refuses %j', (n) => {
    expect(() => checkFileName(n, 'heredoc name')).toThrow(/invalid heredoc name/);
  });
});

describe('checkName', () => {
  it('accepts the ids we mint', () => {
    for (const id of ['0f6c3a2e-1b7d-4c61-9a55-3e0f2d1c9b8a', 'worker-1', 'abc_DEF.1', 'a']) {
      expect(checkName(id)).toBe(id);
    }
  });

  it.each([
    ['empty', ''],
    ['dot', '.'],
    ['dot-dot', '..'],
    ['slash', 'a/b'],
    ['leading slash', '/etc'],
    ['climb', '../x'],
    ['NUL', 'a\0b'],
    ['backslash', 'a\\b'],
    ['newline', 'a\nb'],
    ['hidden', '.git'],
    ['option-like', '-rf'],
    ['space', 'a b'],
    ['over-long', 'a'.repeat(129)],
  ])('refuses %s', (_label, name) => {
    expect(isSafeName(name)).toBe(false);
    let caught: unknown;
    try {
      checkName(name, 'build id');
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({
      code: 'PATH_INVALID',
      message: expect.stringContaining('invalid build id'),
    });
  });

  it('takes a length limit', () => {
    expect(checkName('a'.repeat(200), 'id', 200)).toHaveLength(200);
    expect(() => checkName('a'.repeat(9), 'id', 8)).toThrow(/invalid id/);
  });

  it('refuses what is not a string', () => {
    expect(isSafeName(undefined)).toBe(false);
    expect(isSafeName(12)).toBe(false);
  });

  it('nameBeneath joins a checked name only', () => {
    expect(nameBeneath('/jobs', 'b1')).toBe('/jobs/b1');
    expect(() => nameBeneath('/jobs', '..', 'build id')).toThrow(/invalid build id/);
  });
});
