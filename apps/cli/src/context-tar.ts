import { lstat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { planContextFiles } from '@stratum/dockerfile';
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

/**
 * Decides what of `dir` is sent: everything .dockerignore does not exclude, and always the
 * Dockerfile and .dockerignore themselves, as Docker does (the walk is `planContextFiles`).
 */
export async function planContext(
  dir: string,
  dockerfile: string | undefined,
  cwd: string,
): Promise<ContextPlan> {
  const root = resolve(dir);
  const dfPath = dockerfile === undefined ? join(root, 'Dockerfile') : resolve(cwd, dockerfile);
  const relDf = relative(root, dfPath);
  const inside = relDf !== '' && relDf !== '..' && !relDf.startsWith(`..${sep}`) && !isAbsolute(relDf);
  const files = await planContextFiles(root, inside ? relDf.split(sep).join('/') : '', { skipGitDir: false });
  if (inside) {
    await lstat(dfPath); // fails clearly when the Dockerfile does not exist
    return { files, dockerfile: relDf.split(sep).join('/'), extraDockerfile: null };
  }
  await lstat(dfPath);
  return {
    files,
    dockerfile: OUTSIDE_DOCKERFILE,
    extraDockerfile: { source: dfPath, name: OUTSIDE_DOCKERFILE },
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
