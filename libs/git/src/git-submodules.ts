import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { StratumError } from '@stratum/contracts';
import { GitCli, GitTransport, redact } from './git-cli';

/** Most submodules one checkout may hold, nested ones included. */
export const MAX_SUBMODULES = 64;

/** Deepest nesting of submodules (a submodule's submodule is depth 2). */
export const MAX_SUBMODULE_DEPTH = 8;

/** What a checkout's submodules are fetched with: the parent's git, transports and URL. */
export interface SubmoduleFetch {
  readonly git: GitCli;
  /** Transports a submodule URL may use (the parent's list: ADD_GIT_SCHEMES). */
  readonly transports: readonly GitTransport[];
  /** True when ssh URLs can be fetched (the build's ssh key is served); else they are refused. */
  readonly ssh: boolean;
  /** For messages: the parent repository, redacted. */
  readonly parent: string;
  /** For messages: the setting that lists the transports; default `ADD_GIT_SCHEMES=<list>`. */
  readonly policy?: string;
  readonly signal?: AbortSignal;
}

/**
 * Resolves a submodule URL as git does (`git submodule init`): `./x` and `../x` are relative to
 * the superproject's URL (taken as a directory: `../lib.git` next to `https://h/org/app.git` is
 * `https://h/org/lib.git`), anything else is taken as written. A relative URL that climbs above
 * the host (or the scp-like path's start) is an error.
 * https://git-scm.com/docs/git-submodule#Documentation/git-submodule.txt-add
 */
export function resolveSubmoduleUrl(parentUrl: string, url: string): string {
  if (!url.startsWith('./') && !url.startsWith('../')) {
    return url;
  }
  let base = parentUrl.replace(/\/+$/, '');
  // The part no `..` may remove: `scheme://host`, or `user@host:` of the scp-like form.
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(base);
  const scp = scheme === null ? /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.exec(base) : null;
  const fixed = scheme?.[0] ?? scp?.[0] ?? '';
  let path = base.slice(fixed.length);
  let rest = url;
  for (;;) {
    if (rest.startsWith('./')) {
      rest = rest.slice(2);
    } else if (rest.startsWith('../')) {
      rest = rest.slice(3);
      const slash = path.lastIndexOf('/');
      if (path === '' || (slash <= 0 && fixed === '')) {
        throw new StratumError(
          'BAD_REQUEST',
          `submodule URL "${url}" climbs above the repository URL ${redact(parentUrl)}`,
        );
      }
      path = slash < 0 ? '' : path.slice(0, slash);
    } else {
      break;
    }
  }
  base = fixed + path;
  return base.endsWith(':') || base.endsWith('/') ? `${base}${rest}` : `${base}/${rest}`;
}

/** The transport git uses for `url` (a {@link GitTransport} or another); a local path (`/srv/x`) is file. */
export function submoduleTransport(url: string): string {
  if (/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)/.test(url)) {
    return 'ssh';
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (scheme === null) {
    // git's "transport::address" form (ext::, fd::…) or a path on the local disk.
    const helper = /^([A-Za-z][A-Za-z0-9+.-]*)::/.exec(url);
    return helper !== null ? `${helper[1].toLowerCase()}::` : 'file';
  }
  return scheme[1].toLowerCase();
}

interface Submodule {
  readonly name: string;
  readonly path: string;
  readonly url: string;
}

/** The gitlinks of HEAD (`git ls-tree`), mapped to their `.gitmodules` name and URL. */
async function listSubmodules(dir: string, fetch: SubmoduleFetch, where: string): Promise<Submodule[]> {
  const tree = await fetch.git.run(['ls-tree', '-r', '-z', '--full-tree', 'HEAD'], dir, fetch.signal);
  const gitlinks: string[] = [];
  for (const entry of tree.split('\0')) {
    const m = /^160000 commit [0-9a-f]+\t(.+)$/s.exec(entry);
    if (m !== null) {
      gitlinks.push(m[1]);
    }
  }
  if (gitlinks.length === 0) {
    return [];
  }
  const modules = await lstat(join(dir, '.gitmodules')).catch(() => null);
  if (modules === null || !modules.isFile()) {
    throw new StratumError(
      'GIT_FETCH_FAILED',
      `${where}: the repository has submodules (${gitlinks[0]}) but no .gitmodules file naming their URLs`,
    );
  }
  // `-z`: key\nvalue\0 per entry, so a value holding a newline stays one value.
  const out = await fetch.git
    .run(['config', '-z', '--file', '.gitmodules', '--get-regexp', '^submodule\\..*\\.(path|url)$'], dir)
    .catch(() => '');
  const byName = new Map<string, { path?: string; url?: string }>();
  for (const item of out.split('\0')) {
    const nl = item.indexOf('\n');
    const m = /^submodule\.(.+)\.(path|url)$/s.exec(nl < 0 ? item : item.slice(0, nl));
    if (m === null || nl < 0) {
      continue;
    }
    const entry = byName.get(m[1]) ?? {};
    entry[m[2] as 'path' | 'url'] = item.slice(nl + 1);
    byName.set(m[1], entry);
  }
  return gitlinks.map((path) => {
    // git refuses such paths itself; checked here too, as the recursion joins them to `dir`.
    if (path.startsWith('/') || path.split('/').some((c) => c === '..' || c === '.' || c === '')) {
      throw new StratumError(
        'GIT_FETCH_FAILED',
        `${where}: submodule path "${path}" is not a plain relative path`,
      );
    }
    const found = [...byName].find(([, e]) => e.path === path);
    if (found === undefined || found[1].url === undefined || found[1].url === '') {
      throw new StratumError(
        'GIT_FETCH_FAILED',
        `${where}: no URL for the submodule at "${path}" in .gitmodules`,
      );
    }
    return { name: found[0], path, url: found[1].url };
  });
}

/**
 * Checks out the submodules of the repository in `dir` at the commits its HEAD pins, and
 * theirs, recursively: what BuildKit's git source does after its checkout
 * (`git submodule update --init --recursive --depth=1`, source/git/source.go). Done one level
 * at a time so that every URL is checked before git sees it: relative URLs are resolved
 * against the superproject's URL here (git would resolve them against the checkout's own
 * directory, as it has no `origin`), and each must use a transport of
 * {@link SubmoduleFetch.transports} — a `file://` URL or a local path only where file is listed
 * (tests), an ssh URL only when the build's ssh key is served. Fetches run with the parent's
 * git settings (no hooks or templates, same credentials and GIT_SSH_COMMAND, `protocol.allow`
 * as a second line). At most {@link MAX_SUBMODULES} submodules, {@link MAX_SUBMODULE_DEPTH}
 * deep; the disk limit of the checkout covers them (their objects live in the parent's
 * `.git/modules/<name>`, git's default layout, and each submodule directory has a `.git` file
 * pointing there). LFS files stay pointers, as in BuildKit, which does not smudge them either.
 * Answers the checked-out submodule paths relative to `dir`, nested ones included.
 */
export async function checkoutSubmodules(
  dir: string,
  url: string,
  fetch: SubmoduleFetch,
  state: { count: number; depth: number; prefix: string } = { count: 0, depth: 0, prefix: '' },
): Promise<string[]> {
  const where = `git source ${fetch.parent}${state.prefix === '' ? '' : ` (submodule ${state.prefix})`}`;
  const submodules = await listSubmodules(dir, fetch, where);
  if (submodules.length === 0) {
    return [];
  }
  if (state.depth + 1 > MAX_SUBMODULE_DEPTH) {
    throw new StratumError(
      'GIT_SOURCE_TOO_LARGE',
      `${where}: submodules nest more than ${MAX_SUBMODULE_DEPTH} deep`,
    );
  }
  state.count += submodules.length;
  if (state.count > MAX_SUBMODULES) {
    throw new StratumError(
      'GIT_SOURCE_TOO_LARGE',
      `${where}: more than ${MAX_SUBMODULES} submodules in the repository`,
    );
  }
  const resolved = submodules.map((s) => {
    let target: string;
    try {
      target = resolveSubmoduleUrl(url, s.url);
    } catch (err) {
      throw new StratumError('BAD_REQUEST', `${where}: submodule "${s.path}": ${(err as Error).message}`);
    }
    const transport = submoduleTransport(target);
    const refuse = (why: string): StratumError =>
      new StratumError('BAD_REQUEST', `${where}: submodule "${s.path}" (${redact(target)}): ${why}`);
    if (!(fetch.transports as readonly string[]).includes(transport)) {
      throw refuse(
        `the ${transport.replace(/::$/, '')} transport is not allowed here (${fetch.policy ?? `ADD_GIT_SCHEMES=${fetch.transports.join(',') || '(none)'}`})`,
      );
    }
    if (target.startsWith('-')) {
      throw refuse('a git URL must not start with "-"');
    }
    if (transport === 'ssh' && !fetch.ssh) {
      throw refuse(
        'it is fetched over ssh with the build\'s ssh key "default", which this build was not given',
      );
    }
    return { ...s, target };
  });
  for (const s of resolved) {
    // Set before `--init` runs: init keeps a URL already configured, so git never resolves one.
    await fetch.git.run(['config', `submodule.${s.name}.url`, s.target], dir, fetch.signal);
  }
  await fetch.git.run(
    [
      '-c',
      'core.symlinks=true',
      'submodule',
      'update',
      '--init',
      '--checkout',
      '--depth',
      '1',
      '--no-recommend-shallow',
      '--',
      ...resolved.map((s) => s.path),
    ],
    dir,
    fetch.signal,
  );
  const paths: string[] = [];
  for (const s of resolved) {
    const rel = state.prefix === '' ? s.path : `${state.prefix}/${s.path}`;
    paths.push(rel);
    const nested = await checkoutSubmodules(join(dir, s.path), s.target, fetch, {
      count: state.count,
      depth: state.depth + 1,
      prefix: rel,
    });
    paths.push(...nested);
    state.count += nested.length;
  }
  return paths;
}
