import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { readFileBeneath } from '@stratum/confine';
import { parseDockerignore } from './dockerignore';

/** Largest `.dockerignore` read from a context that is not the user's own (1 MiB of patterns). */
export const MAX_DOCKERIGNORE_BYTES = 1024 * 1024;

/**
 * The files of a directory a build context holds: everything `.dockerignore` does not exclude
 * (the same matcher the worker applies, {@link parseDockerignore}), always the Dockerfile and
 * `.dockerignore` themselves, and — for a git checkout (`skipGitDir`, the default) — never
 * `.git`, as BuildKit drops it from git contexts. Context-relative paths, parents before
 * children, sorted. Used by webhook builds and by the CLI (which sends `.git` unless ignored,
 * as `docker build` does); it lives here, beside the matcher, because the CLI loads this lib
 * at start-up and it has no heavy dependencies.
 */
export async function planContextFiles(
  dir: string,
  dockerfile: string,
  options: {
    skipGitDir?: boolean;
    /**
     * `beneath` (default): `.dockerignore` is read only inside `dir` (a link out of it is a
     * PATH_ESCAPE error: a git checkout on the API host must not read that host's files).
     * `follow`: read wherever it links to, as `docker build` does with the user's own files.
     */
    ignoreFile?: 'beneath' | 'follow';
  } = {},
): Promise<string[]> {
  const skipGitDir = options.skipGitDir ?? true;
  const root = resolve(dir);
  let ignoreText = '';
  if (options.ignoreFile === 'follow') {
    try {
      ignoreText = await readFile(join(root, '.dockerignore'), 'utf8');
    } catch {
      // no .dockerignore: send everything
    }
  } else {
    ignoreText =
      (await readFileBeneath(root, '.dockerignore', MAX_DOCKERIGNORE_BYTES, {
        symlinks: 'refuse-escape',
        what: '.dockerignore',
      })) ?? '';
  }
  // An empty `dockerfile` (the Dockerfile lies outside the context): only .dockerignore is kept.
  const ignore = parseDockerignore(ignoreText, { dockerfilePath: dockerfile === '' ? '.' : dockerfile });
  const files: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (skipGitDir && p === '.git') {
        continue;
      }
      const ignored = ignore.isIgnored(p);
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
