import { readdir, rm, rmdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ConfineError, readFileBeneath } from '@stratum/confine';
import { Dockerignore, MAX_DOCKERIGNORE_BYTES, parseDockerignore } from '@stratum/dockerfile';

/**
 * Applies the context's ignore file to the extracted context, as the docker CLI does before
 * sending it: contexts uploaded by other clients (curl, a webhook) arrive unfiltered. Like
 * BuildKit, `<Dockerfile>.dockerignore` next to the Dockerfile wins over `.dockerignore` at
 * the root. The Dockerfile and the ignore file themselves are always kept.
 *
 * @returns how many entries were removed.
 */
export async function applyDockerignore(
  contextDir: string,
  dockerfile: string,
  warn: (text: string) => void = () => undefined,
): Promise<number> {
  const rules = await readDockerignore(contextDir, dockerfile, warn);
  if (rules === null || rules.patterns.length === 0) {
    return 0;
  }
  const hasExceptions = rules.patterns.some((p) => p.startsWith('!'));
  return prune(contextDir, '', rules, hasExceptions);
}

/**
 * The context's ignore file (`<Dockerfile>.dockerignore`, else `.dockerignore`), parsed; null
 * when there is none. Both stay in the extracted context, so this reads it after pruning too.
 */
export async function readDockerignore(
  contextDir: string,
  dockerfile: string,
  warn: (text: string) => void = () => undefined,
): Promise<Dockerignore | null> {
  const dockerfilePath = posix.normalize(`/${dockerfile}`).slice(1);
  let text: string | null = null;
  for (const candidate of [`${dockerfilePath}.dockerignore`, '.dockerignore']) {
    // Inside the context only. One that links out of it is not read: the CLI has applied it
    // already (it reads the user's own files), and whatever it names on this host is not ours.
    try {
      text = await readFileBeneath(contextDir, candidate, MAX_DOCKERIGNORE_BYTES, {
        symlinks: 'refuse-escape',
        what: candidate,
      });
    } catch (err) {
      if (!(err instanceof ConfineError) || err.code === 'FILE_TOO_LARGE') {
        throw err;
      }
      warn(`warning: ${err.message}: not applied\n`);
      text = null;
    }
    if (text !== null) {
      break;
    }
  }
  return text === null ? null : parseDockerignore(text, { dockerfilePath });
}

async function prune(
  root: string,
  rel: string,
  rules: Dockerignore,
  hasExceptions: boolean,
): Promise<number> {
  let removed = 0;
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  for (const e of entries) {
    const path = rel === '' ? e.name : `${rel}/${e.name}`;
    const ignored = rules.isIgnored(path);
    if (e.isDirectory()) {
      if (ignored && !hasExceptions) {
        await rm(join(root, path), { recursive: true, force: true });
        removed++;
        continue;
      }
      // With `!` exceptions a child of an ignored directory may come back: look inside.
      removed += await prune(root, path, rules, hasExceptions);
      if (ignored) {
        const left = await readdir(join(root, path));
        if (left.length === 0) {
          await rmdir(join(root, path));
          removed++;
        }
      }
    } else if (ignored) {
      await rm(join(root, path), { force: true });
      removed++;
    }
  }
  return removed;
}
