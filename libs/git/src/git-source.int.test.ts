import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkGitChecksum,
  checkoutGitSource,
  GitSourceOptions,
  parseGitSource,
  parseGitTransports,
  resolveGitSource,
} from './index';
import { runGit } from '@stratum/testing';

// A local bare repository (file:// is allowed here only because the test lists it).
const root = mkdtempSync(join(tmpdir(), 'stratum-git-source-'));
const bare = join(root, 'repo.git');
const work = join(root, 'work');
const sha: Record<string, string> = {};

const git = (cwd: string, ...args: string[]): string => runGit(root, cwd, ...args);

beforeAll(() => {
  mkdirSync(work);
  git(work, 'init', '--quiet', '-b', 'main', '.');
  mkdirSync(join(work, 'sub'));
  writeFileSync(join(work, 'a.txt'), 'one\n');
  writeFileSync(join(work, 'sub', 'b.txt'), 'bee\n');
  git(work, 'add', '.');
  git(work, 'commit', '--quiet', '-m', 'one');
  sha.one = git(work, 'rev-parse', 'HEAD');
  git(work, 'tag', '-a', 'v1', '-m', 'v1');
  sha.tagObject = git(work, 'rev-parse', 'v1');
  writeFileSync(join(work, 'a.txt'), 'two\n');
  git(work, 'commit', '--quiet', '-am', 'two');
  sha.two = git(work, 'rev-parse', 'HEAD');
  git(work, 'checkout', '--quiet', '-b', 'dev');
  writeFileSync(join(work, 'a.txt'), 'dev\n');
  git(work, 'commit', '--quiet', '-am', 'dev');
  sha.dev = git(work, 'rev-parse', 'HEAD');
  git(work, 'checkout', '--quiet', 'main');
  git(root, 'clone', '--quiet', '--bare', work, bare);
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

const options: GitSourceOptions = {
  transports: ['file'],
  timeoutMs: 30_000,
  maxBytes: 50 * 1024 * 1024,
};

describe('parseGitSource', () => {
  it('reads the forms BuildKit calls git, and nothing else', () => {
    expect(parseGitSource('https://host/org/repo.git#v1:docs')).toEqual({
      remote: 'https://host/org/repo.git',
      transport: 'https',
      ref: 'v1',
      subdir: 'docs',
    });
    expect(parseGitSource('git@host:org/repo.git#main')).toEqual({
      remote: 'git@host:org/repo.git',
      transport: 'ssh',
      ref: 'main',
      subdir: null,
    });
    expect(parseGitSource('ssh://git@host/org/repo')?.transport).toBe('ssh');
    expect(parseGitSource('git://host/org/repo')?.transport).toBe('git');
    expect(parseGitSource('github.com/org/repo')?.remote).toBe('https://github.com/org/repo');
    expect(parseGitSource('https://host/archive.tar.gz')).toBeNull();
    expect(parseGitSource('src/file.txt')).toBeNull();
    expect(parseGitSource('file:///srv/repo.git#:sub')).toMatchObject({
      transport: 'file',
      ref: null,
      subdir: 'sub',
    });
    expect(() => parseGitSource('https://host/r.git#main:../../etc')).toThrow(/must stay inside/);
    expect(() => parseGitSource('https://host/r.git#--upload-pack=x')).toThrow(/not a valid ref/);
  });

  it('checks the ADD_GIT_SCHEMES list', () => {
    expect(parseGitTransports('https, ssh')).toEqual(['https', 'ssh']);
    expect(() => parseGitTransports('https,ftp')).toThrow(/ftp/);
  });
});

describe('resolve and check out a git source', () => {
  it('resolves a branch, an annotated tag (peeled) and HEAD', async () => {
    const url = `file://${bare}`;
    expect(await resolveGitSource(parseGitSource(`${url}#dev`)!, root, options)).toMatchObject({
      commit: sha.dev,
      refName: 'refs/heads/dev',
    });
    expect(await resolveGitSource(parseGitSource(`${url}#v1`)!, root, options)).toEqual({
      commit: sha.one,
      tagObject: sha.tagObject,
      refName: 'refs/tags/v1',
    });
    expect((await resolveGitSource(parseGitSource(url)!, root, options)).commit).toBe(sha.two);
    await expect(resolveGitSource(parseGitSource(`${url}#nope`)!, root, options)).rejects.toMatchObject({
      code: 'GIT_REF_UNKNOWN',
    });
  });

  it('checks out the commit of a tag and a commit id', async () => {
    const src = parseGitSource(`file://${bare}#v1`)!;
    const dir = join(root, 'co-tag');
    await checkoutGitSource(src, await resolveGitSource(src, root, options), dir, options);
    expect(readFileSync(join(dir, 'a.txt'), 'utf8')).toBe('one\n');
    expect(existsSync(join(dir, '.git'))).toBe(true);
    const byId = parseGitSource(`file://${bare}#${sha.dev}`)!;
    const dir2 = join(root, 'co-id');
    await checkoutGitSource(byId, await resolveGitSource(byId, root, options), dir2, options);
    expect(readFileSync(join(dir2, 'a.txt'), 'utf8')).toBe('dev\n');
  });

  it('refuses a transport that is not listed, before git runs', async () => {
    const src = parseGitSource(`file://${bare}#main`)!;
    await expect(resolveGitSource(src, root, { ...options, transports: ['https', 'ssh'] })).rejects.toThrow(
      /file transport is not allowed here \(ADD_GIT_SCHEMES=https,ssh\)/,
    );
  });

  it('stops a checkout larger than the limit', async () => {
    const src = parseGitSource(`file://${bare}#main`)!;
    const resolved = await resolveGitSource(src, root, options);
    await expect(
      checkoutGitSource(src, resolved, join(root, 'co-big'), { ...options, maxBytes: 1024 }),
    ).rejects.toMatchObject({ code: 'GIT_SOURCE_TOO_LARGE' });
  });

  it('compares a checksum with the commit (or tag object) id, by prefix', async () => {
    const src = parseGitSource(`file://${bare}#v1`)!;
    const resolved = await resolveGitSource(src, root, options);
    expect(checkGitChecksum(src, resolved, sha.one)).toBeNull();
    expect(checkGitChecksum(src, resolved, sha.one.slice(0, 12))).toBeNull();
    expect(checkGitChecksum(src, resolved, sha.tagObject)).toBeNull();
    expect(checkGitChecksum(src, resolved, sha.two)).toMatch(/expected checksum to match/);
    expect(checkGitChecksum(src, resolved, 'sha256:abc')).toMatch(/commit id/);
  });
});
