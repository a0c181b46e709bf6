import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitForge } from '@stratum/contracts';
import { GitSubmoduleLink, makeBareRepo, runGit, startGitHttpServer } from '@stratum/testing';
import { credentialScopeOf, fetchCommit, GitSource, pullRequestRef } from './index';

// A local bare repository whose pull/merge request heads live only under refs/pull and
// refs/merge-requests (as a forge keeps a fork's commits in the base repository), and that
// refuses commit ids that are not a ref's tip (uploadpack.allowReachableSHA1InWant=false).
const root = mkdtempSync(join(tmpdir(), 'stratum-git-fetch-'));
const bare = join(root, 'repo.git');
const work = join(root, 'work');
const source: GitSource = { url: `file://${bare}`, allowFile: true, timeoutMs: 30_000 };
let prCommit: string;
let dirs = 0;

const git = (cwd: string, ...args: string[]): string => runGit(root, cwd, ...args);

/**
 * A checkout dir whose repository asks for protocol v0: protocol v2's upload-pack serves any
 * reachable commit id whatever the server's setting, a v0 one (older servers, many proxies and
 * other implementations) only ref tips. fetchCommit's `git init` keeps this config.
 */
function v0Dir(): string {
  const dir = join(root, `checkout-${dirs++}`);
  mkdirSync(dir);
  git(dir, 'init', '--quiet', '.');
  git(dir, 'config', 'protocol.version', '0');
  return dir;
}

beforeAll(() => {
  mkdirSync(work);
  git(work, 'init', '--quiet', '-b', 'main', '.');
  git(work, 'commit', '--quiet', '--allow-empty', '-m', 'main');
  git(work, 'checkout', '--quiet', '-b', 'pr');
  git(work, 'commit', '--quiet', '--allow-empty', '-m', 'pr work');
  prCommit = git(work, 'rev-parse', 'HEAD');
  // A newer commit on the PR after the webhook: the hook's commit is no longer a tip.
  git(work, 'commit', '--quiet', '--allow-empty', '-m', 'pr more work');
  git(root, 'init', '--quiet', '--bare', bare);
  git(
    work,
    'push',
    '--quiet',
    bare,
    'main:refs/heads/main',
    'pr:refs/pull/7/head',
    'pr:refs/merge-requests/8/head',
  );
  git(bare, 'config', 'uploadpack.allowReachableSHA1InWant', 'false');
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('fetchCommit falls back to the ref holding the commit', () => {
  it('the server refuses the bare commit id (so the fallback is needed)', async () => {
    await expect(fetchCommit(source, prCommit, null, v0Dir())).rejects.toThrow(/unadvertised object/);
  });

  it('GitHub/Gitea: refs/pull/<n>/head', async () => {
    const dir = v0Dir();
    expect(pullRequestRef(GitForge.GitHub, 7)).toBe('refs/pull/7/head');
    await fetchCommit(source, prCommit, pullRequestRef(GitForge.GitHub, 7), dir);
    expect(git(dir, 'rev-parse', 'HEAD')).toBe(prCommit);
  });

  it('GitLab: refs/merge-requests/<iid>/head', async () => {
    const dir = v0Dir();
    expect(pullRequestRef(GitForge.GitLab, 8)).toBe('refs/merge-requests/8/head');
    await fetchCommit(source, prCommit, pullRequestRef(GitForge.GitLab, 8), dir);
    expect(git(dir, 'rev-parse', 'HEAD')).toBe(prCommit);
  });

  it('a fallback that is not a branch, tag or pull/merge request ref is refused', async () => {
    await expect(fetchCommit(source, prCommit, '--upload-pack=touch /tmp/x', v0Dir())).rejects.toThrow(
      /not a ref to fetch/,
    );
    await expect(fetchCommit(source, prCommit, 'refs/notes/x', v0Dir())).rejects.toThrow(
      /not a ref to fetch/,
    );
  });
});

describe('fetchCommit checks out submodules, as BuildKit does for a git context', () => {
  const subRoot = join(root, 'subs');
  const servers: { url: string; close: () => Promise<void> }[] = [];
  /** Authorization headers each server saw ('' for a request without one), by server. */
  const seen: string[][] = [[], []];
  let appSha = '';

  const makeRepo = (name: string, files: Record<string, string>, subs: GitSubmoduleLink[] = []): string =>
    makeBareRepo(root, subRoot, name, files, subs);

  beforeAll(async () => {
    mkdirSync(subRoot);
    for (const i of [0, 1]) {
      servers.push(
        await startGitHttpServer(subRoot, (req) => seen[i].push(String(req.headers.authorization ?? ''))),
      );
    }
    const inner = makeRepo('inner', { 'inner.txt': 'inner\n' });
    // `same`: relative, so on the project's own server; `other`: another origin (port).
    appSha = makeRepo('app', { 'app.txt': 'app\n' }, [
      { name: 'same', path: 'same', url: '../inner.git', commit: inner },
      { name: 'other', path: 'other', url: `${servers[1].url}/git/inner.git`, commit: inner },
    ]);
  });

  afterAll(async () => {
    for (const s of servers) {
      await s.close();
    }
  });

  it('over HTTP: the project token goes to its own origin only, never to a submodule elsewhere', async () => {
    const dir = join(root, 'co-http-subs');
    const result = await fetchCommit(
      {
        url: `${servers[0].url}/git/app.git`,
        allowFile: false,
        timeoutMs: 30_000,
        credentials: { username: 'x-access-token', token: 't0ken' },
      },
      appSha,
      null,
      dir,
    );
    expect([...result.submodules].sort()).toEqual(['other', 'same']);
    expect(readFileSync(join(dir, 'same/inner.txt'), 'utf8')).toBe('inner\n');
    expect(readFileSync(join(dir, 'other/inner.txt'), 'utf8')).toBe('inner\n');
    const basic = `Basic ${Buffer.from('x-access-token:t0ken').toString('base64')}`;
    // Project fetch and the relative submodule: same origin, every request authorised.
    expect(seen[0].length).toBeGreaterThan(2);
    expect(new Set(seen[0])).toEqual(new Set([basic]));
    // The submodule on the other origin was fetched, without the token.
    expect(seen[1].length).toBeGreaterThan(0);
    expect(new Set(seen[1])).toEqual(new Set(['']));
    expect(credentialScopeOf('https://u:p@forge.example:8443/org/r.git')).toBe('https://forge.example:8443/');
    expect(credentialScopeOf('git@forge.example:org/r.git')).toBeNull();
  });

  it('file:// submodules only where file:// projects are allowed', async () => {
    const fileApp = makeRepo('file-app', { 'a.txt': 'a\n' }, [
      {
        name: 'local',
        path: 'local',
        url: `file://${subRoot}/inner.git`,
        commit: git(subRoot, '--git-dir', join(subRoot, 'inner.git'), 'rev-parse', 'HEAD'),
      },
    ]);
    const viaHttp = fetchCommit(
      { url: `${servers[0].url}/git/file-app.git`, allowFile: false, timeoutMs: 30_000 },
      fileApp,
      null,
      join(root, 'co-file-subs-http'),
    );
    await expect(viaHttp).rejects.toThrow(
      `submodule "local" (file://${subRoot}/inner.git): the file transport is not allowed here (https, http, ssh and git; GIT_ALLOW_FILE_URLS is off)`,
    );
    const allowed = await fetchCommit(
      { url: `file://${subRoot}/file-app.git`, allowFile: true, timeoutMs: 30_000 },
      fileApp,
      null,
      join(root, 'co-file-subs-ok'),
    );
    expect(allowed.submodules).toEqual(['local']);
    expect(existsSync(join(root, 'co-file-subs-ok/local/inner.txt'))).toBe(true);
  });
});
