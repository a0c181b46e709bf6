import { lstat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { planContextFiles } from '@stratum/context';
import type * as Tar from '@stratum/tar';

export interface ContextPlan {
  /** Context-relative paths to send, parents before children. */
  readonly files: string[];
  /** The Dockerfile path inside the context, as sent to the API. */
  readonly dockerfile: string;
  /** Set when the Dockerfile lies outside the context and is sent under this name. */
  readonly extraDockerfile: { readonly source: string; readonly name: string } | null;
}

const OUTSIDE_DOCKERFILE = '.stratum.Dockerfile';

/** Where the Dockerfile of a build lies, relative to its context directory. */
export interface DockerfileLocation {
  /** The context directory, absolute. */
  readonly root: string;
  /** The Dockerfile, absolute. */
  readonly path: string;
  /** Its `/`-separated path inside the context, or null when it lies outside. */
  readonly inContext: string | null;
  /** The Dockerfile path as sent to the API (`inContext`, or a reserved name when outside). */
  readonly sentAs: string;
}

/** Resolves `-f` (default DIR/Dockerfile) against the working directory and the context. */
export function locateDockerfile(
  dir: string,
  dockerfile: string | undefined,
  cwd: string,
): DockerfileLocation {
  const root = resolve(dir);
  const path = dockerfile === undefined ? join(root, 'Dockerfile') : resolve(cwd, dockerfile);
  const rel = relative(root, path);
  const inside = rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
  const inContext = inside ? rel.split(sep).join('/') : null;
  return { root, path, inContext, sentAs: inContext ?? OUTSIDE_DOCKERFILE };
}

/**
 * Decides what of `dir` is sent: everything .dockerignore does not exclude, and always the
 * Dockerfile and .dockerignore themselves, as Docker does (the walk is `planContextFiles`).
 */
export async function planContext(
  dir: string,
  dockerfile: string | undefined,
  cwd: string,
): Promise<ContextPlan> {
  return planLocatedContext(locateDockerfile(dir, dockerfile, cwd));
}

/** {@link planContext} for an already located Dockerfile. */
export async function planLocatedContext(loc: DockerfileLocation): Promise<ContextPlan> {
  const files = await planContextFiles(loc.root, loc.inContext ?? '', {
    skipGitDir: false,
    // the user's own files, read as `docker build` reads them (links followed)
    ignoreFile: 'follow',
  });
  await lstat(loc.path); // fails clearly when the Dockerfile does not exist
  return {
    files,
    dockerfile: loc.sentAs,
    extraDockerfile: loc.inContext === null ? { source: loc.path, name: OUTSIDE_DOCKERFILE } : null,
  };
}

let tarLib: typeof Tar | undefined;
/**
 * @stratum/tar, loaded when a context is first tarred rather than at start-up: `stratum --help`,
 * `logs` or `builds` never need it, and every module loaded costs the CLI's start time.
 */
function tarCodec(): typeof Tar {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deferred on purpose, see above
  tarLib ??= require('@stratum/tar') as typeof Tar;
  return tarLib;
}

/**
 * Streams the planned context as a deterministic tar with portable headers (numeric ids 0, no
 * uname/gname, node-tar's portable modes, no directory mtimes): `tarFiles` of @stratum/tar.
 * A Dockerfile from outside the context is appended under its in-context name.
 */
export async function tarContext(
  dir: string,
  plan: ContextPlan,
): Promise<{ stream: Readable; cleanup: () => void }> {
  const extra = plan.extraDockerfile === null ? [] : [plan.extraDockerfile];
  return Promise.resolve({
    stream: Readable.from(tarCodec().tarFiles(dir, plan.files, extra)),
    cleanup: () => undefined,
  });
}
