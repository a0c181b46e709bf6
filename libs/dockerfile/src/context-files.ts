import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseDockerignore } from './dockerignore';

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
