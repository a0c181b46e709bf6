import type { Hash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, type BigIntStats } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDockerignore } from '@stratum/context';
import { DockerfileLocation } from './context-tar';

/** Bump when what goes into the tar (or into the fingerprint) changes. */
const FINGERPRINT_VERSION = 'stratum-context-v5';

/** node:crypto is loaded on first use: loading it costs the CLI's start-up a few ms. */
async function sha256(): Promise<Hash> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256');
}

function statLine(path: string, st: BigIntStats): string {
  return `${JSON.stringify(path)} ${st.mode} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${st.dev}:${st.ino}`;
}

/**
 * Whether .dockerignore `patterns` exclude the whole subtree of every directory they exclude,
 * so that a walk may skip it: no `!` exception (which could re-include part of it), and only
 * wildcards that stay within one path part (`*`, `?`, and `**` as a whole part). `**x`, `a**b`
 * or a class such as `[^x]` can match a directory without matching the paths below it.
 */
export function excludesWholeSubtrees(patterns: readonly string[]): boolean {
  return patterns.every(
    (p) =>
      !p.startsWith('!') &&
      !/[[\\]/.test(p) &&
      p.split('/').every((part) => part === '**' || !part.includes('**')),
  );
}

/**
 * The entries of a context directory a fingerprint covers, context-relative, with their lstat:
 * everything, but for the directories .dockerignore excludes with their whole subtree
 * ({@link excludesWholeSubtrees}) unless the Dockerfile lies below. A superset of what
 * `planContextFiles` sends. One walk with synchronous readdir and lstat: the CLI has nothing
 * else to do meanwhile, and 5,000 promise round trips through the thread pool took 3x as long.
 */
export function fingerprintEntries(loc: DockerfileLocation, ignoreText: string): [string, BigIntStats][] {
  const { root } = loc;
  const ignore = parseDockerignore(ignoreText, { dockerfilePath: loc.inContext ?? '.' });
  const prune = excludesWholeSubtrees(ignore.patterns);
  const keep = (dir: string): boolean =>
    !prune || (loc.inContext?.startsWith(`${dir}/`) ?? false) || !ignore.isIgnored(dir);
  const entries: [string, BigIntStats][] = [];
  const walk = (rel: string): void => {
    const names = readdirSync(rel === '' ? root : join(root, rel)).sort();
    for (const name of names) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(root, p), { bigint: true });
      if (!st.isDirectory()) {
        entries.push([p, st]);
      } else if (keep(p)) {
        entries.push([p, st]);
        walk(p);
      }
    }
  };
  walk('');
  return entries;
}

/**
 * Fingerprint of a context directory, taken before the context is planned (the plan is only
 * needed when the tar is sent): the Dockerfile's and every {@link fingerprintEntries} entry's
 * path and the lstat fields the tar is made from (type and mode, owner, size, mtime), plus
 * ctime and inode, which any change of content moves (user space cannot set ctime), and the
 * text of .dockerignore (which may be a symlink to a file elsewhere). Equal fingerprints mean
 * the same tar bytes; an excluded file that changes costs a needless upload, never a stale
 * context. Planning (matching every path against .dockerignore) and then fingerprinting the
 * plan took twice as long as this one walk.
 */
export async function contextFingerprint(loc: DockerfileLocation): Promise<string> {
  const dockerfile = statLine(loc.path, lstatSync(loc.path, { bigint: true })); // ENOENT: no Dockerfile
  let ignoreText = '';
  try {
    ignoreText = readFileSync(join(loc.root, '.dockerignore'), 'utf8');
  } catch {
    // none: nothing is excluded
  }
  const lines = fingerprintEntries(loc, ignoreText).map(([p, st]) => statLine(p, st));
  return (await sha256())
    .update(`${FINGERPRINT_VERSION}\n${loc.sentAs}\n${JSON.stringify(ignoreText)}\n${dockerfile}\n`)
    .update(lines.join('\n'))
    .digest('hex');
}

/**
 * Remembers, per server and context directory, the digest the server gave the context the
 * last time it was sent, keyed by the context's {@link contextFingerprint}. One small file
 * per directory, so the cache does not grow with the number of builds.
 */
export class ContextDigestCache {
  constructor(
    private readonly cacheDir: string,
    private readonly serverUrl: string,
  ) {}

  private async file(loc: DockerfileLocation): Promise<string> {
    const key = (await sha256())
      .update(`${this.serverUrl}\0${loc.root}\0${loc.sentAs}\0${loc.inContext === null ? loc.path : ''}`)
      .digest('hex');
    return join(this.cacheDir, 'contexts', `${key}.json`);
  }

  /** The digest stored for exactly this fingerprint, or null. */
  async lookup(loc: DockerfileLocation, fingerprint: string): Promise<string | null> {
    try {
      const v = JSON.parse(await readFile(await this.file(loc), 'utf8')) as {
        fingerprint?: unknown;
        digest?: unknown;
      };
      return v.fingerprint === fingerprint &&
        typeof v.digest === 'string' &&
        /^sha256:[0-9a-f]{64}$/.test(v.digest)
        ? v.digest
        : null;
    } catch {
      return null; // no entry yet, or unreadable: send the context
    }
  }

  /** Best effort: a cache that cannot be written only costs an upload next time. */
  async remember(loc: DockerfileLocation, fingerprint: string, digest: string): Promise<void> {
    const file = await this.file(loc);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await mkdir(join(this.cacheDir, 'contexts'), { recursive: true });
      await writeFile(tmp, JSON.stringify({ fingerprint, digest }));
      await rename(tmp, file);
    } catch {
      // ignore
    }
  }
}
