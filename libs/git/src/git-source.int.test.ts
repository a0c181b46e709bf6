import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkGitChecksum,
  checkoutGitSource,
  checkoutSubmodules,
  GitCli,
  GitSourceOptions,
  GitTransport,
  resolveSubmoduleUrl,
  SubmoduleFetch,
  submoduleTransport,
  parseGitSource,
  parseGitTransports,
  resolveGitSource,
} from './index';
import { GitSubmoduleLink, makeBareRepo, runGit } from '@stratum/testing';

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

describe('submodules (BuildKit: git submodule update --init --recursive --depth=1)', () => {
  const subRoot = join(root, 'subs');
  const pinned: Record<string, string> = {};

  const makeRepo = (name: string, files: Record<string, string>, subs: GitSubmoduleLink[] = []): string =>
    makeBareRepo(root, subRoot, name, files, subs);

  beforeAll(() => {
    mkdirSync(subRoot);
    // inner: two commits; lib pins the first (not the branch tip), so the pin is what is fetched.
    pinned.inner = makeRepo('inner', { 'inner.txt': 'pinned\n' });
    const iw = join(subRoot, 'inner-work');
    writeFileSync(join(iw, 'inner.txt'), 'tip\n');
    git(iw, 'commit', '--quiet', '-am', 'tip');
    git(iw, 'push', '--quiet', join(subRoot, 'inner.git'), 'main');
    // lib has inner as a nested submodule by a relative URL (next to lib.git).
    pinned.lib = makeRepo('lib', { 'lib.txt': 'lib\n' }, [
      { name: 'deep', path: 'deep', url: '../inner.git', commit: pinned.inner },
    ]);
    pinned.app = makeRepo('app', { 'app.txt': 'app\n' }, [
      { name: 'lib', path: 'vendor/lib', url: '../lib.git', commit: pinned.lib },
      { name: 'abs', path: 'abs', url: `file://${subRoot}/inner.git`, commit: pinned.inner },
    ]);
    makeRepo('https-sub', { 'x.txt': 'x\n' }, [
      { name: 'ext', path: 'ext', url: 'https://example.invalid/org/x.git', commit: pinned.inner },
    ]);
    makeRepo('ssh-sub', { 'x.txt': 'x\n' }, [
      { name: 'ext', path: 'ext', url: 'git@example.invalid:org/x.git', commit: pinned.inner },
    ]);
    makeRepo('climb-sub', { 'x.txt': 'x\n' }, [
      {
        name: 'up',
        path: 'up',
        url: '../../../../../../../../../../../../../../x.git',
        commit: pinned.inner,
      },
    ]);
  });

  async function checkout(name: string, dir: string, opts: GitSourceOptions = options) {
    const src = parseGitSource(`file://${subRoot}/${name}.git#main`)!;
    return checkoutGitSource(src, await resolveGitSource(src, root, opts), join(root, dir), opts);
  }

  it('checks out submodules at their pinned commits, nested ones too, relative URLs next to the parent', async () => {
    const result = await checkout('app', 'co-subs');
    const dir = join(root, 'co-subs');
    expect([...result.submodules].sort()).toEqual(['abs', 'vendor/lib', 'vendor/lib/deep']);
    expect(readFileSync(join(dir, 'app.txt'), 'utf8')).toBe('app\n');
    expect(readFileSync(join(dir, 'vendor/lib/lib.txt'), 'utf8')).toBe('lib\n');
    expect(readFileSync(join(dir, 'vendor/lib/deep/inner.txt'), 'utf8')).toBe('pinned\n');
    expect(readFileSync(join(dir, 'abs/inner.txt'), 'utf8')).toBe('pinned\n');
    // git's layout: the objects in the parent's .git/modules, a .git file in the submodule.
    expect(readFileSync(join(dir, 'vendor/lib/.git'), 'utf8')).toMatch(/^gitdir: .*\.git\/modules\/lib/);
    expect(existsSync(join(dir, '.git/modules/lib/modules/deep'))).toBe(true);
    // No template in a submodule's clone: no (sample) hooks.
    expect(existsSync(join(dir, '.git/modules/lib/hooks'))).toBe(false);
    expect(git(join(dir, 'vendor/lib/deep'), 'rev-parse', 'HEAD')).toBe(pinned.inner);
  });

  it('refuses a submodule whose transport the policy does not list, naming it, before git fetches it', async () => {
    await expect(checkout('https-sub', 'co-https')).rejects.toThrow(
      'git source file://' +
        `${subRoot}/https-sub.git: submodule "ext" (https://example.invalid/org/x.git): the https transport is not allowed here (ADD_GIT_SCHEMES=file)`,
    );
  });

  it('refuses a file:// submodule (or a local path) to a policy without file; relative URLs follow the parent', async () => {
    // app's checkout, its submodules then taken as if app had come from an https forge.
    const dir = join(root, 'co-as-https');
    const src = parseGitSource(`file://${subRoot}/app.git#main`)!;
    await checkoutGitSource(src, await resolveGitSource(src, root, options), dir, options);
    const fetch = (transports: GitTransport[]): SubmoduleFetch => ({
      git: new GitCli({ timeoutMs: 30_000, allowFile: false, protocols: transports }),
      transports,
      ssh: false,
      parent: 'https://forge.invalid/org/app.git',
    });
    await expect(
      checkoutSubmodules(dir, 'https://forge.invalid/org/app.git', fetch(['https'])),
    ).rejects.toThrow(
      `git source https://forge.invalid/org/app.git: submodule "abs" (file://${subRoot}/inner.git): the file transport is not allowed here (ADD_GIT_SCHEMES=https)`,
    );
    expect(resolveSubmoduleUrl('https://forge.invalid/org/app.git', '../lib.git')).toBe(
      'https://forge.invalid/org/lib.git',
    );
    expect(resolveSubmoduleUrl('git@forge.invalid:org/app.git', './sub/x.git')).toBe(
      'git@forge.invalid:org/app.git/sub/x.git',
    );
    expect(resolveSubmoduleUrl('git@forge.invalid:org/app.git', '../../x.git')).toBe(
      'git@forge.invalid:x.git',
    );
    expect(submoduleTransport('/srv/repo.git')).toBe('file');
    expect(submoduleTransport('ext::sh -c touch% /tmp/x')).toBe('ext::');
  });

  it('an ssh submodule needs the build ssh key; a relative URL may not climb above the parent', async () => {
    await expect(checkout('ssh-sub', 'co-ssh', { ...options, transports: ['file', 'ssh'] })).rejects.toThrow(
      /submodule "ext" \(git@example.invalid:org\/x.git\): it is fetched over ssh with the build's ssh key "default", which this build was not given/,
    );
    await expect(checkout('climb-sub', 'co-climb')).rejects.toThrow(/climbs above the repository URL/);
  });

  it('counts submodules in the size limit', async () => {
    // app alone takes about 104 KiB on disk (measured with du), with its submodules more than 200.
    await expect(checkout('app', 'co-subs-big', { ...options, maxBytes: 200 * 1024 })).rejects.toMatchObject({
      code: 'GIT_SOURCE_TOO_LARGE',
    });
  });
});
