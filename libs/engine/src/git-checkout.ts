import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfineError, containerPath, resolveInRoot } from '@stratum/confine';
import {
  checkGitChecksum,
  checkoutGitSource,
  GitSourceOptions,
  GitSourceRef,
  parseGitSource,
  redact,
  resolveGitSource,
  ResolvedGitRef,
} from '@stratum/git';
import { BuildError } from './build-errors';
import { BuildEngineOptions } from './engine-options';

const DEFAULT_GIT: NonNullable<BuildEngineOptions['gitSources']> = {
  transports: ['https', 'ssh'],
  timeoutMs: 300_000,
  maxBytes: 2 * 1024 * 1024 * 1024,
};

/** A git source of a build, its ref resolved to a commit (what keys the step). */
export interface ResolvedGitSource {
  readonly source: GitSourceRef;
  readonly resolved: ResolvedGitRef;
  /** The URL without userinfo: what a cache key and the log may carry. */
  readonly remote: string;
}

function gitOptions(options: BuildEngineOptions, signal: AbortSignal): GitSourceOptions {
  const git = options.gitSources ?? DEFAULT_GIT;
  return { transports: git.transports, timeoutMs: git.timeoutMs, maxBytes: git.maxBytes, signal };
}

/** A user's git problem (unknown ref, transport not allowed, fetch failed) as a BuildError at `line`. */
function asBuildError(err: unknown, what: string, line: number): unknown {
  const code = (err as { code?: string }).code;
  if (
    code === 'BAD_REQUEST' ||
    code === 'GIT_REF_UNKNOWN' ||
    code === 'GIT_FETCH_FAILED' ||
    code === 'GIT_SOURCE_TOO_LARGE'
  ) {
    return new BuildError(`${what}: ${(err as Error).message}`, line);
  }
  return err;
}

/**
 * Resolves a git source's ref to its commit (`git ls-remote`, in `cwd`), as BuildKit does
 * before it looks up the cache: the step is keyed by the commit, so a moved branch rebuilds
 * and an unchanged one does not fetch. `checksum` (ADD --checksum) is checked here, before
 * anything is fetched.
 */
export async function resolveBuildGitSource(
  url: string,
  options: BuildEngineOptions,
  signal: AbortSignal,
  cwd: string,
  what: string,
  line: number,
  checksum?: string,
): Promise<ResolvedGitSource> {
  try {
    const source = parseGitSource(url);
    if (source === null) {
      throw new BuildError(`${what}: ${redact(url)} is not a git URL`, line);
    }
    await mkdir(cwd, { recursive: true });
    const resolved = await resolveGitSource(source, cwd, gitOptions(options, signal));
    if (checksum !== undefined) {
      const problem = checkGitChecksum(source, resolved, checksum);
      if (problem !== null) {
        throw new BuildError(`${what}: ${problem}`, line);
      }
    }
    return { source, resolved, remote: redact(source.remote) };
  } catch (err) {
    throw asBuildError(err, what, line);
  }
}

/**
 * Checks the resolved commit out below `scratch`: `checkout` is the repository (without `.git`
 * unless `keepGitDir`; the caller removes it), `dir` what to copy: the checkout, or its
 * `#…:subdir` resolved inside it (a symlink leading out of the repository is an error).
 */
export async function checkoutBuildGitSource(
  git: ResolvedGitSource,
  options: BuildEngineOptions,
  signal: AbortSignal,
  scratch: string,
  keepGitDir: boolean,
  what: string,
  line: number,
): Promise<{ checkout: string; dir: string }> {
  const dir = join(scratch, `git-${randomBytes(6).toString('hex')}`);
  try {
    await checkoutGitSource(git.source, git.resolved, dir, gitOptions(options, signal));
  } catch (err) {
    throw asBuildError(err, what, line);
  }
  if (!keepGitDir) {
    await rm(join(dir, '.git'), { recursive: true, force: true });
  }
  if (git.source.subdir === null) {
    return { checkout: dir, dir };
  }
  let rel: string;
  try {
    rel = await resolveInRoot(dir, git.source.subdir, { symlinks: 'refuse-escape', what: 'git subdir' });
  } catch (err) {
    throw err instanceof ConfineError ? new BuildError(`${what}: ${err.message}`, line) : err;
  }
  const sub = containerPath(dir, rel);
  const st = await lstat(sub).catch(() => null);
  if (st === null || !st.isDirectory()) {
    throw new BuildError(
      `${what}: ${git.remote}#${git.source.ref ?? ''}:${git.source.subdir}: no such directory at ${git.resolved.commit}`,
      line,
    );
  }
  return { checkout: dir, dir: sub };
}
