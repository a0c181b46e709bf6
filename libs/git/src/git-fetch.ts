import { mkdir } from 'node:fs/promises';
import { GitForge, StratumError } from '@stratum/contracts';
import { GitCli, GitCliOptions, GitTransport, isCommitSha, redact } from './git-cli';
import { checkoutSubmodules } from './git-submodules';

/** Where a project's repository lives; credentials optional. */
export interface GitSource extends GitCliOptions {
  readonly url: string;
}

/** True when `url` names a transport git may use for a project (file:// only when allowed). */
export function checkRepositoryUrl(url: string, allowFile: boolean): string | null {
  // scp-like ssh syntax: user@host:path
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*/.test(url)) {
    return null;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'must be a URL (https://, ssh://, git://) or user@host:path';
  }
  const allowed = ['https:', 'http:', 'ssh:', 'git:', ...(allowFile ? ['file:'] : [])];
  if (!allowed.includes(parsed.protocol)) {
    return `the ${parsed.protocol.replace(':', '')} transport is not allowed (use ${allowed
      .map((p) => p.replace(':', ''))
      .join(', ')})`;
  }
  if (parsed.protocol !== 'file:' && url.startsWith('-')) {
    return 'must not start with "-"';
  }
  return null;
}

/** True for a repository git reaches over ssh: `ssh://…` or scp-like `user@host:path`. */
export function isSshRepositoryUrl(url: string): boolean {
  return /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/]/.test(url) || /^ssh:\/\//i.test(url);
}

/** Most bytes of a project's known_hosts. */
export const MAX_KNOWN_HOSTS_BYTES = 64 * 1024;

/**
 * Null when `text` is OpenSSH known_hosts lines (`[markers] hosts keytype base64key [comment]`,
 * blank lines and `#` comments allowed; `ssh-keyscan host` prints them), else what is wrong.
 */
export function checkKnownHosts(text: string): string | null {
  if (Buffer.byteLength(text) > MAX_KNOWN_HOSTS_BYTES) {
    return `at most ${MAX_KNOWN_HOSTS_BYTES} bytes`;
  }
  let entries = 0;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const f = line.split(/\s+/);
    const [, type, key] = f[0].startsWith('@') ? f.slice(1) : f;
    if (
      type === undefined ||
      key === undefined ||
      !/^(ssh-|ecdsa-|sk-)[a-z0-9@.-]+$/.test(type) ||
      !/^[A-Za-z0-9+/]+={0,2}$/.test(key)
    ) {
      return `line ${i + 1} is not "host keytype base64-key" (as ssh-keyscan prints)`;
    }
    entries++;
  }
  return entries === 0 ? 'no host key in it' : null;
}

/** Refs {@link fetchCommit} may fall back to: a branch, a tag, a pull or merge request head. */
const FALLBACK_REF = /^refs\/(heads|tags|pull|merge-requests)\/[^\s:~^?*[\\]+$/;

/**
 * The ref holding a pull request's head on `forge`: `refs/pull/<n>/head` on GitHub and Gitea,
 * `refs/merge-requests/<iid>/head` on GitLab (both kept by the forge in the base repository,
 * so a fork's commits can be fetched from it).
 */
export function pullRequestRef(forge: GitForge, number: number): string {
  return forge === GitForge.GitLab ? `refs/merge-requests/${number}/head` : `refs/pull/${number}/head`;
}

/**
 * Where a repository's HTTP credentials may go: its origin (`https://host:port/`), as
 * actions/checkout and BuildKit (for github.com) scope a token, so that submodules on the same
 * forge get it and those elsewhere do not. Null for a URL that is not http(s).
 */
export function credentialScopeOf(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? `${u.protocol}//${u.host}/` : null;
  } catch {
    return null;
  }
}

/** The transports a project's repository (and so its submodules) may use. */
function projectTransports(source: GitSource): GitTransport[] {
  return ['https', 'http', 'ssh', 'git', ...(source.allowFile ? ['file' as const] : [])];
}

/**
 * Fetches exactly one commit into `dir` (a fresh repository) and checks it out, then its
 * submodules at the commits it pins, recursively, as BuildKit's git context does
 * ({@link checkoutSubmodules}: URLs resolved against the repository's, file:// only when
 * allowed, ssh ones only with the project's deploy key and host keys, HTTP credentials sent to
 * the repository's origin only), without history, hooks or LFS smudging: `git init`,
 * `git fetch --depth 1 <url> <sha>`, `git checkout --detach`. Servers that refuse to serve an unadvertised commit id
 * (uploadpack.allowReachableSHA1InWant off, protocol v0) get `fallbackRef` fetched instead —
 * the branch head, the tag, or the pull/merge request head ref ({@link pullRequestRef}) —
 * which must then be that commit or have it within its last 50 commits.
 */
export async function fetchCommit(
  source: GitSource,
  sha: string,
  fallbackRef: string | null,
  dir: string,
  signal?: AbortSignal,
): Promise<{ submodules: string[] }> {
  if (!isCommitSha(sha)) {
    throw new StratumError('BAD_REQUEST', `not a commit id: ${JSON.stringify(sha)}`);
  }
  if (fallbackRef !== null && !FALLBACK_REF.test(fallbackRef)) {
    throw new StratumError('BAD_REQUEST', `not a ref to fetch: ${JSON.stringify(fallbackRef)}`);
  }
  const problem = checkRepositoryUrl(source.url, source.allowFile);
  if (problem !== null) {
    throw new StratumError('BAD_REQUEST', `repository ${redact(source.url)}: ${problem}`);
  }
  const scope = credentialScopeOf(source.url);
  const git = new GitCli(scope !== null ? { ...source, credentialScope: scope } : source);
  await mkdir(dir, { recursive: true });
  await git.run(['init', '--quiet', '--template=', '.'], dir, signal);
  try {
    await git.run(['fetch', '--quiet', '--no-tags', '--depth', '1', '--', source.url, sha], dir, signal);
  } catch (err) {
    if (fallbackRef === null) {
      throw err;
    }
    await git.run(
      ['fetch', '--quiet', '--no-tags', '--depth', '50', '--', source.url, fallbackRef],
      dir,
      signal,
    );
  }
  await git.run(['-c', 'core.symlinks=true', 'checkout', '--quiet', '--detach', sha, '--'], dir, signal);
  const submodules = await checkoutSubmodules(dir, source.url, {
    git,
    transports: projectTransports(source),
    ssh: source.ssh !== undefined,
    parent: redact(source.url),
    policy: source.allowFile
      ? 'https, http, ssh, git and file'
      : 'https, http, ssh and git; GIT_ALLOW_FILE_URLS is off',
    ...(signal !== undefined ? { signal } : {}),
  });
  return { submodules };
}

/** The commit a branch points at (`git ls-remote`), or null when the branch does not exist. */
export async function resolveBranch(
  source: GitSource,
  branch: string,
  cwd: string,
  signal?: AbortSignal,
): Promise<string | null> {
  const problem = checkRepositoryUrl(source.url, source.allowFile);
  if (problem !== null) {
    throw new StratumError('BAD_REQUEST', `repository ${redact(source.url)}: ${problem}`);
  }
  const out = await new GitCli(source).run(
    ['ls-remote', '--', source.url, `refs/heads/${branch}`],
    cwd,
    signal,
  );
  for (const line of out.split('\n')) {
    const [sha, ref] = line.split('\t');
    if (ref === `refs/heads/${branch}` && sha !== undefined && isCommitSha(sha)) {
      return sha;
    }
  }
  return null;
}

/** Author name and first line of the message of the commit checked out in `dir`. */
export interface CommitInfo {
  readonly author: string;
  readonly message: string;
}

/** Reads {@link CommitInfo} of HEAD in `dir` (a checkout made by {@link fetchCommit}). */
export async function readCommitInfo(options: GitCliOptions, dir: string): Promise<CommitInfo> {
  const out = await new GitCli(options).run(['log', '-1', '--format=%an%x00%s', 'HEAD', '--'], dir);
  const [author = '', message = ''] = out.replace(/\n$/, '').split('\0');
  // Bounded: a record and every status or notification carry it.
  return { author: author.slice(0, 200), message: message.slice(0, 500) };
}
