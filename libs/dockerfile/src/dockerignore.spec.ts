import { parseDockerignore } from './dockerignore';

describe('parseDockerignore', () => {
  const di = parseDockerignore(
    [
      '# comment',
      '',
      'node_modules',
      '*.log',
      '!important.log',
      '/build',
      './tmp/',
      '**/*.tmp',
      'docs/**',
      '!docs/keep.md',
      '  spaced  ',
      'Dockerfile',
      '.dockerignore',
    ].join('\n'),
  );

  it.each([
    ['node_modules', true],
    ['node_modules/x/index.js', true],
    ['app.log', true],
    ['important.log', false],
    ['sub/app.log', false], // *.log matches at the root only
    ['build/out.bin', true],
    ['src/build/out.bin', false],
    ['tmp/a', true],
    ['a/b/c.tmp', true],
    ['x.tmp', true],
    ['docs/guide.md', true],
    ['docs/keep.md', false],
    ['spaced', true],
    ['src/index.ts', false],
    ['App.LOG', false], // case-sensitive as on Linux
    ['Dockerfile', false], // always sent
    ['.dockerignore', false], // always sent
  ])('%s ignored: %s', (path, ignored) => {
    expect(di.isIgnored(path)).toBe(ignored);
  });

  it('keeps cleaned patterns', () => {
    expect(di.patterns).toEqual([
      'node_modules',
      '*.log',
      '!important.log',
      'build',
      'tmp',
      '**/*.tmp',
      'docs/**',
      '!docs/keep.md',
      'spaced',
      'Dockerfile',
      '.dockerignore',
    ]);
  });

  it('last match wins and a custom Dockerfile path is always sent', () => {
    const d = parseDockerignore('*\n!src\nsrc/secret\n', { dockerfilePath: 'build/app.Dockerfile' });
    expect(d.isIgnored('README.md')).toBe(true);
    expect(d.isIgnored('src/main.ts')).toBe(false);
    expect(d.isIgnored('src/secret')).toBe(true);
    expect(d.isIgnored('build/app.Dockerfile')).toBe(false);
    expect(d.isIgnored('./build/app.Dockerfile')).toBe(false);
  });

  it('empty file ignores nothing; CRLF and BOM are accepted', () => {
    expect(parseDockerignore('').isIgnored('anything')).toBe(false);
    expect(parseDockerignore('\uFEFFa\r\nb\r\n').isIgnored('b')).toBe(true);
  });
});
