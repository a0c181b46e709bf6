import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import dockerignore from '@balena/dockerignore';
import { create as createTar } from 'tar';

/**
 * The files of a directory a build context holds: everything `.dockerignore` does not exclude
 * (Docker's matcher, `@balena/dockerignore`), always the Dockerfile and `.dockerignore`
 * themselves, and — for a git checkout (`skipGitDir`, the default) — never `.git`, as BuildKit
 * drops it from git contexts. Context-relative paths, parents before children, sorted. Used by
 * the webhook builds and by the CLI (which sends `.git` unless ignored, as `docker build` does).
 */
export async function planContextFiles(
  dir: string,
  dockerfile: string,
  options: { skipGitDir?: boolean } = {},
): Promise<string[]> {
  const skipGitDir = options.skipGitDir ?? true;
  const root = resolve(dir);
  let ignoreText = '';
  try {
    ignoreText = await readFile(join(root, '.dockerignore'), 'utf8');
  } catch {
    // no .dockerignore: send everything
  }
  const ig = dockerignore({ ignorecase: false }).add(ignoreText);
  const keep = new Set(['.dockerignore', dockerfile]);
  const files: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (skipGitDir && p === '.git') {
        continue;
      }
      const ignored = ig.ignores(p) && !keep.has(p);
      if (e.isDirectory()) {
        // Walked even when ignored: a later `!pattern` may re-include its children.
        const before = files.length;
        await walk(p);
        if (!ignored || files.length > before) {
          files.splice(before, 0, p);
        }
      } else if (!ignored) {
        files.push(p);
      }
    }
  };
  await walk('');
  return files;
}

/** Streams `files` of `dir` as a tar with portable headers (no uname/gname, no recursion). */
export function tarContextFiles(dir: string, files: readonly string[]): Readable {
  const pack = createTar({ cwd: resolve(dir), portable: true, noDirRecurse: true }, [...files]);
  return Readable.from(pack as AsyncIterable<Buffer>);
}
