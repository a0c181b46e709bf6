import { createPathMatcher, parseDockerignore, splitParentsSource } from './dockerignore';

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

describe('createPathMatcher (COPY/ADD --exclude)', () => {
  it("matches as BuildKit's pattern matcher: anchored, `*` within one level, `**` across levels", () => {
    // the reference's examples: --exclude=*.txt, --exclude=*.md
    const m = createPathMatcher(['*.txt', '*.md']);
    expect(m.matches('home.txt')).toBe(true);
    expect(m.matches('README.md')).toBe(true);
    expect(m.matches('home.go')).toBe(false);
    expect(m.matches('sub/a.txt')).toBe(false);
    const deep = createPathMatcher(['**/*.png', 'docs']);
    expect(deep.matches('a/b/c.png')).toBe(true);
    expect(deep.matches('c.png')).toBe(true);
    // a matched directory takes everything below it
    expect(deep.matches('docs/x/y.md')).toBe(true);
    expect(deep.hasExceptions).toBe(false);
  });

  it('BuildKit test cases: */*.png and */*.jpeg exclude one level down only', () => {
    const m = createPathMatcher(['*/*.png', '*/*.jpeg']);
    expect(m.matches('dir1/file-101.png')).toBe(true);
    expect(m.matches('dir1/file-102.txt')).toBe(false);
    expect(m.matches('dir2/file-202.jpeg')).toBe(true);
    expect(m.matches('file.png')).toBe(false);
  });

  it('`!` exceptions bring paths back; an empty list matches nothing', () => {
    const m = createPathMatcher(['logs', '!logs/keep.log']);
    expect(m.hasExceptions).toBe(true);
    expect(m.matches('logs/a.log')).toBe(true);
    expect(m.matches('logs/keep.log')).toBe(false);
    expect(createPathMatcher([]).matches('anything')).toBe(false);
  });
});

describe('splitParentsSource (COPY --parents)', () => {
  it.each([
    ['./x/a.txt', '.', 'x/a.txt'],
    ['x/./y/*.txt', 'x', 'y/*.txt'],
    ['./x/./y/*.txt', 'x', 'y/*.txt'],
    ['/abs/dir/./sub', 'abs/dir', 'sub'],
    ['a/./b/./c', 'a', 'b/c'],
    ['packages/*/package.json', '.', 'packages/*/package.json'],
  ])('%s -> root %s, pattern %s', (src, root, pattern) => {
    expect(splitParentsSource(src)).toEqual({ root, pattern });
  });
});
