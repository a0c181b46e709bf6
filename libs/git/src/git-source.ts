import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { StratumError } from '@stratum/contracts';
import { GitCli, GitTransport, isCommitSha, redact } from './git-cli';
import { checkoutSubmodules } from './git-submodules';

/**
 * A git source as a Dockerfile names it (`ADD <git ref> <dir>`, a `--build-context` value):
 * the remote, and the `#ref:subdir` fragment. BuildKit's rules (util/gitutil ParseGitRef):
 * `git@host:path` (scp-like ssh), `ssh://` and `git://` URLs are always git; an http(s) URL only
 * when its path ends in `.git`; `github.com/o/r` means https. `file://` is ours, for tests only:
 * it is a git source here, allowed only where the operator lists it (ADD_GIT_SCHEMES).
 * https://docs.docker.com/reference/dockerfile/#adding-files-from-a-git-repository
 */
export interface GitSourceRef {
  /** The repository URL without the fragment (what git fetches). */
  readonly remote: string;
  readonly transport: GitTransport;
  /** Branch, tag, `refs/...` or a full commit id; null: the remote's HEAD. */
  readonly ref: string | null;
  /** Directory of the repository to use, relative, or null for the whole tree. */
  readonly subdir: string | null;
}

/** The `#ref:subdir` fragment of a git URL. */
function splitFragment(url: string): { base: string; ref: string | null; subdir: string | null } {
  const hash = url.indexOf('#');
  if (hash < 0) {
    return { base: url, ref: null, subdir: null };
  }
  const fragment = url.slice(hash + 1);
  const colon = fragment.indexOf(':');
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = colon < 0 ? '' : fragment.slice(colon + 1);
  return { base: url.slice(0, hash), ref: ref === '' ? null : ref, subdir: subdir === '' ? null : subdir };
}

/** True when `src` is a git source by BuildKit's rules (see {@link GitSourceRef}). */
export function isGitSource(src: string): boolean {
  return parseGitSource(src) !== null;
}

/**
 * Parses a git source; null when `src` is not one (a plain URL or a path). Throws BAD_REQUEST
 * for one that is a git source but malformed (a ref starting with `-`, a subdir with `..`).
 */
export function parseGitSource(src: string): GitSourceRef | null {
  const { base, ref, subdir } = splitFragment(src.trim());
  let remote: string;
  let transport: GitTransport;
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)[^\s]+$/.test(base) && !base.includes('://')) {
    remote = base;
    transport = 'ssh';
  } else if (/^github\.com\/[^\s]+$/.test(base)) {
    remote = `https://${base}`;
    transport = 'https';
  } else {
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      return null;
    }
    const scheme = url.protocol.replace(/:$/, '');
    if (scheme === 'ssh' || scheme === 'git' || scheme === 'file') {
      transport = scheme;
    } else if ((scheme === 'https' || scheme === 'http') && url.pathname.endsWith('.git')) {
      transport = scheme;
    } else {
      return null;
    }
    remote = base;
  }
  if (ref !== null && (ref.startsWith('-') || /[\s\0~^:?*[\\]/.test(ref) || ref.includes('..'))) {
    throw new StratumError('BAD_REQUEST', `git source ${redact(src)}: "${ref}" is not a valid ref`);
  }
  if (subdir !== null && (subdir.split('/').includes('..') || subdir.includes('\0'))) {
    throw new StratumError(
      'BAD_REQUEST',
      `git source ${redact(src)}: subdir "${subdir}" must stay inside the repository`,
    );
  }
  return { remote, transport, ref, subdir };
}

/** Parses the ADD_GIT_SCHEMES list (`https,ssh`): the transports git sources may use. */
export function parseGitTransports(list: string): GitTransport[] {
  const known: GitTransport[] = ['https', 'http', 'ssh', 'git', 'file'];
  const out: GitTransport[] = [];
  for (const item of list.split(',').map((s) => s.trim().toLowerCase())) {
    if (item === '') {
      continue;
    }
    if (!known.includes(item as GitTransport)) {
      throw new Error(`unknown git transport "${item}" (known: ${known.join(', ')})`);
    }
    out.push(item as GitTransport);
  }
  return out;
}

/** Limits and transports of fetching a git source for a build. */
export interface GitSourceOptions {
  /** Transports allowed (ADD_GIT_SCHEMES); anything else is refused before git runs. */
  readonly transports: readonly GitTransport[];
  /** Each git command is killed after this long. */
  readonly timeoutMs: number;
  /** The fetched repository (objects and checkout) may take at most this much disk. */
  readonly maxBytes: number;
  /** `GIT_SSH_COMMAND` for ssh sources (the build's key); default: no key of ours. */
  readonly sshCommand?: string;
  readonly signal?: AbortSignal;
}

/** What a ref resolved to. */
export interface ResolvedGitRef {
  /** The commit to check out. */
  readonly commit: string;
  /** The annotated tag object the ref named, when it did (a `--checksum` may name it). */
  readonly tagObject: string | null;
  /** The remote ref fetched (`refs/heads/main`), or null when the ref was a commit id. */
  readonly refName: string | null;
}

function checkTransport(source: GitSourceRef, options: GitSourceOptions): void {
  if (!options.transports.includes(source.transport)) {
    throw new StratumError(
      'BAD_REQUEST',
      `git source ${redact(source.remote)}: the ${source.transport} transport is not allowed here (ADD_GIT_SCHEMES=${options.transports.join(',') || '(none)'})`,
    );
  }
  if (source.transport !== 'file' && source.remote.startsWith('-')) {
    throw new StratumError('BAD_REQUEST', 'a git URL must not start with "-"');
  }
}

function cli(options: GitSourceOptions): GitCli {
  return new GitCli({
    timeoutMs: options.timeoutMs,
    allowFile: options.transports.includes('file'),
    protocols: options.transports,
    ...(options.sshCommand !== undefined ? { sshCommand: options.sshCommand } : {}),
  });
}

/**
 * Resolves the source's ref to a commit with `git ls-remote` (branch first, then tag, peeled
 * to its commit), as BuildKit's git source does before it fetches; a full commit id is taken
 * as is. Throws GIT_REF_UNKNOWN when the remote has no such ref.
 */
export async function resolveGitSource(
  source: GitSourceRef,
  cwd: string,
  options: GitSourceOptions,
): Promise<ResolvedGitRef> {
  checkTransport(source, options);
  if (source.ref !== null && isCommitSha(source.ref)) {
    return { commit: source.ref, tagObject: null, refName: null };
  }
  const wanted = source.ref ?? 'HEAD';
  const patterns =
    source.ref === null
      ? ['HEAD']
      : wanted.startsWith('refs/')
        ? [wanted, `${wanted}^{}`]
        : [`refs/heads/${wanted}`, `refs/tags/${wanted}`, `refs/tags/${wanted}^{}`];
  const out = await cli(options).run(['ls-remote', '--', source.remote, ...patterns], cwd, options.signal);
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [sha, name] = line.split('\t');
    if (sha !== undefined && name !== undefined && isCommitSha(sha)) {
      refs.set(name, sha);
    }
  }
  const order =
    source.ref === null
      ? ['HEAD']
      : wanted.startsWith('refs/')
        ? [wanted]
        : [`refs/heads/${wanted}`, `refs/tags/${wanted}`];
  for (const name of order) {
    const sha = refs.get(name);
    if (sha === undefined) {
      continue;
    }
    const peeled = refs.get(`${name}^{}`);
    return { commit: peeled ?? sha, tagObject: peeled !== undefined ? sha : null, refName: name };
  }
  throw new StratumError(
    'GIT_REF_UNKNOWN',
    `git source ${redact(source.remote)}: no branch or tag "${wanted}" (a commit must be given as its full id)`,
  );
}

/** Bytes `dir` takes on disk (`du -sx`), 0 when it cannot be read. */
function diskUse(dir: string): Promise<number> {
  return new Promise((resolve) => {
    execFile('du', ['-sx', '--block-size=1', dir], (err, stdout) => {
      resolve(err === null ? Number(stdout.split('\t')[0]) : 0);
    });
  });
}

/** What {@link checkoutGitSource} checked out beside the repository itself. */
export interface GitCheckout {
  /**
   * The submodules checked out, relative to the checkout, nested ones included. Each holds a
   * `.git` file pointing into the parent's `.git/modules/` (git's layout); a caller that drops
   * `.git` drops those files too.
   */
  readonly submodules: readonly string[];
}

/**
 * Fetches exactly the resolved commit into `dir` (a new repository: `git init`, a depth-1 fetch
 * of the ref or commit, a detached checkout), then its submodules at the commits it pins,
 * recursively ({@link checkoutSubmodules}: the same transports, ssh command and limits, URLs
 * checked before git sees them), without hooks or LFS smudging (as BuildKit: LFS files stay
 * pointers), and within {@link GitSourceOptions.maxBytes} (watched while git runs: past it git
 * is killed; submodules count) and the time limit. The cache key stays the parent's commit: it
 * pins every submodule's. Leaves `.git` in place; the caller drops it unless `--keep-git-dir`.
 */
export async function checkoutGitSource(
  source: GitSourceRef,
  resolved: ResolvedGitRef,
  dir: string,
  options: GitSourceOptions,
): Promise<GitCheckout> {
  checkTransport(source, options);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const over = new AbortController();
  const signal = options.signal !== undefined ? AbortSignal.any([options.signal, over.signal]) : over.signal;
  let exceeded = false;
  const timer = setInterval(() => {
    void diskUse(dir).then((used) => {
      if (used > options.maxBytes) {
        exceeded = true;
        over.abort();
      }
    });
  }, 500);
  timer.unref();
  const git = cli(options);
  const tooLarge = (): StratumError =>
    new StratumError(
      'GIT_SOURCE_TOO_LARGE',
      `git source ${redact(source.remote)}: the repository at ${resolved.commit} takes more than ${options.maxBytes} bytes (ADD_GIT_MAX_BYTES)`,
    );
  let submodules: string[];
  try {
    await git.run(['init', '--quiet', '--template=', '.'], dir, signal);
    const what = resolved.refName ?? resolved.commit;
    await git.run(['fetch', '--quiet', '--no-tags', '--depth', '1', '--', source.remote, what], dir, signal);
    await git.run(
      ['-c', 'core.symlinks=true', 'checkout', '--quiet', '--detach', resolved.commit, '--'],
      dir,
      signal,
    );
    const head = (await git.run(['rev-parse', 'HEAD'], dir, signal)).trim();
    if (head !== resolved.commit) {
      throw new StratumError(
        'GIT_FETCH_FAILED',
        `git source ${redact(source.remote)}: fetched ${head}, expected ${resolved.commit} (the ref moved while fetching)`,
      );
    }
    submodules = await checkoutSubmodules(dir, source.remote, {
      git,
      transports: options.transports,
      ssh: options.sshCommand !== undefined,
      parent: redact(source.remote),
      signal,
    });
  } catch (err) {
    if (exceeded) {
      throw tooLarge();
    }
    throw err;
  } finally {
    clearInterval(timer);
  }
  if (exceeded || (await diskUse(dir)) > options.maxBytes) {
    throw tooLarge();
  }
  return { submodules };
}

/**
 * `ADD --checksum=<commit>` of a git source: the commit id (or the annotated tag's object id)
 * must start with the given hex digits (at least 7), as BuildKit compares it.
 */
export function checkGitChecksum(
  source: GitSourceRef,
  resolved: ResolvedGitRef,
  checksum: string,
): string | null {
  const want = checksum.trim().toLowerCase();
  if (!/^[0-9a-f]{7,64}$/.test(want)) {
    return `--checksum=${checksum}: a git source's checksum is a commit id (at least 7 hex digits)`;
  }
  if (resolved.commit.startsWith(want) || (resolved.tagObject?.startsWith(want) ?? false)) {
    return null;
  }
  return `expected checksum to match ${want}, got ${resolved.commit} (${redact(source.remote)}#${source.ref ?? 'HEAD'})`;
}
