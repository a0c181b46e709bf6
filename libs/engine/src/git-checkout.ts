import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
import { SshAgentServer } from './ssh-agent';

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

/**
 * The ssh id whose keys fetch an ssh git source (`git@host:org/repo.git`, `ssh://…`): BuildKit's
 * llb.Git mounts the session's "default" ssh socket for them (client/llb/source.go, MountSSHSock).
 */
export const GIT_SSH_ID = 'default';

/** The private keys of a build by ssh id (`--ssh id=file`, a project's deploy key as "default"). */
export type BuildSshKeys = ReadonlyMap<string, readonly Buffer[]> | undefined;

function gitOptions(options: BuildEngineOptions, signal: AbortSignal, sshCommand?: string): GitSourceOptions {
  const git = options.gitSources ?? DEFAULT_GIT;
  return {
    transports: git.transports,
    timeoutMs: git.timeoutMs,
    maxBytes: git.maxBytes,
    signal,
    ...(sshCommand !== undefined ? { sshCommand } : {}),
  };
}

/** `'…'` for a shell word (git runs GIT_SSH_COMMAND through sh). */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs `fn` with the `GIT_SSH_COMMAND` an ssh git source is fetched with: the build's "default"
 * keys served by an {@link SshAgentServer} (the one RUN --mount=type=ssh uses) on a socket only
 * this process can open, and the host key checked strictly against the operator's known hosts
 * (ADD_GIT_SSH_KNOWN_HOSTS). BuildKit's frontend instead trusts whatever `ssh-keyscan` returns at
 * build time (and skips the check when the scan fails); here an unlisted or changed host key is
 * refused, so a build never fetches from a host nobody vouched for. No ssh config, identity file
 * or known_hosts of the worker's own user is read (`-F /dev/null`, explicit files).
 */
async function withGitSsh<T>(
  source: GitSourceRef,
  options: BuildEngineOptions,
  ssh: BuildSshKeys,
  what: string,
  line: number,
  fn: (sshCommand: string | undefined) => Promise<T>,
  forSubmodules = false,
): Promise<T> {
  const keys = ssh?.get(GIT_SSH_ID);
  const hasKeys = keys !== undefined && keys.length > 0;
  // A checkout's submodules may be ssh ones under an https parent: the key is served to
  // them too when the build has one (without it an ssh submodule is refused by name).
  if (source.transport !== 'ssh' && !(forSubmodules && hasKeys)) {
    return fn(undefined);
  }
  if (!hasKeys) {
    throw new BuildError(
      `${what}: ${redact(source.remote)} is fetched over ssh with the build's ssh key "${GIT_SSH_ID}", which this build was not given (stratum build --ssh ${GIT_SSH_ID}=<private key file>, or a project deploy key)`,
      line,
    );
  }
  // A short path of its own: ssh connects to the agent by name, and sun_path holds 107 bytes.
  const dir = await mkdtemp(join(tmpdir(), 'stratum-git-ssh-'));
  let agent: SshAgentServer | null = null;
  try {
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, options.gitSources?.sshKnownHosts ?? '', { mode: 0o600 });
    agent = await SshAgentServer.listen(join(dir, 'agent'), keys, {
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      mode: 0o600,
    });
    const sshCommand = [
      'ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o CheckHostIP=no',
      `-o UserKnownHostsFile=${shellQuote(knownHosts)} -o GlobalKnownHostsFile=/dev/null`,
      `-o IdentityAgent=${shellQuote(agent.socketPath)} -o IdentityFile=/dev/null -o IdentitiesOnly=no`,
    ].join(' ');
    return await fn(sshCommand);
  } catch (err) {
    throw sshProblem(err, source, what, line);
  } finally {
    await agent?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** ssh's own failures, said plainly: an untrusted host key, a key the server refused. */
function sshProblem(err: unknown, source: GitSourceRef, what: string, line: number): unknown {
  const code = (err as { code?: string }).code;
  const message = (err as Error).message ?? '';
  if (code !== 'GIT_FETCH_FAILED') {
    return err;
  }
  if (/Host key verification failed/.test(message)) {
    const changed = /REMOTE HOST IDENTIFICATION HAS CHANGED/.test(message);
    return new BuildError(
      `${what}: ${redact(source.remote)}: the ssh host key of the server ${
        changed ? 'differs from the one listed for it' : 'is not listed'
      } in the worker's known hosts (ADD_GIT_SSH_KNOWN_HOSTS); the fetch was refused`,
      line,
    );
  }
  if (/Permission denied \(publickey/.test(message)) {
    return new BuildError(
      `${what}: ${redact(source.remote)}: the ssh server refused the build's ssh key "${GIT_SSH_ID}"`,
      line,
    );
  }
  return err;
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
  ssh: BuildSshKeys,
  checksum?: string,
): Promise<ResolvedGitSource> {
  try {
    const source = parseGitSource(url);
    if (source === null) {
      throw new BuildError(`${what}: ${redact(url)} is not a git URL`, line);
    }
    await mkdir(cwd, { recursive: true });
    const resolved = await withGitSsh(source, options, ssh, what, line, (sshCommand) =>
      resolveGitSource(source, cwd, gitOptions(options, signal, sshCommand)),
    );
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
 * Checks the resolved commit out below `scratch`, submodules included (recursively, as
 * BuildKit's git source does): `checkout` is the repository (without `.git` unless
 * `keepGitDir`, which keeps git's own layout: the parent's `.git` with `modules/<name>`, a
 * `.git` file in each submodule; the caller removes it), `dir` what to copy: the checkout, or its
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
  ssh: BuildSshKeys,
): Promise<{ checkout: string; dir: string }> {
  const dir = join(scratch, `git-${randomBytes(6).toString('hex')}`);
  let submodules: readonly string[];
  try {
    ({ submodules } = await withGitSsh(
      git.source,
      options,
      ssh,
      what,
      line,
      (sshCommand) =>
        checkoutGitSource(git.source, git.resolved, dir, gitOptions(options, signal, sshCommand)),
      true,
    ));
  } catch (err) {
    throw asBuildError(err, what, line);
  }
  if (!keepGitDir) {
    // The repository's .git, and each submodule's `.git` file that pointed into it.
    await rm(join(dir, '.git'), { recursive: true, force: true });
    for (const sub of submodules) {
      await rm(join(dir, sub, '.git'), { recursive: true, force: true });
    }
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
