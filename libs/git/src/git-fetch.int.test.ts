import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitForge } from '@stratum/contracts';
import { runGit } from '@stratum/testing';
import { fetchCommit, GitSource, pullRequestRef } from './index';

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
