import { rmSync } from 'node:fs';
import { copyFile, lstat, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { create as createTar } from 'tar';
import { planContextFiles } from '@stratum/git';

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

/**
 * Streams the planned context as a tar with portable headers (no uname/gname). A Dockerfile
 * from outside the context is appended under its in-context name via node-tar's `@archive` entry.
 */
export async function tarContext(
  dir: string,
  plan: ContextPlan,
): Promise<{ stream: Readable; cleanup: () => void }> {
  const entries = [...plan.files];
  let tmp: string | null = null;
  if (plan.extraDockerfile !== null) {
    tmp = await mkdtemp(join(tmpdir(), 'stratum-cli-'));
    await copyFile(plan.extraDockerfile.source, join(tmp, plan.extraDockerfile.name));
    await createTar({ cwd: tmp, portable: true, file: join(tmp, 'dockerfile.tar') }, [
      plan.extraDockerfile.name,
    ]);
    entries.push(`@${join(tmp, 'dockerfile.tar')}`);
  }
  const pack = createTar({ cwd: resolve(dir), portable: true, noDirRecurse: true }, entries);
  const stream = Readable.from(pack as AsyncIterable<Buffer>);
  const dir_ = tmp;
  return { stream, cleanup: () => dir_ !== null && rmSync(dir_, { recursive: true, force: true }) };
}
