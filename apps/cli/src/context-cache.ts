import type { Hash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, type BigIntStats } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDockerignore } from '@stratum/dockerfile';
import { DockerfileLocation } from './context-tar';

/** Bump when what goes into the tar (or into the fingerprint) changes. */
const FINGERPRINT_VERSION = 'stratum-context-v4';

/** node:crypto is loaded on first use: loading it costs the CLI's start-up a few ms. */
async function sha256(): Promise<Hash> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256');
}

function statLine(path: string, st: BigIntStats): string {
  return `${JSON.stringify(path)} ${st.mode} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${st.dev}:${st.ino}`;
}

/**
 * Fingerprint of a context directory, taken before the context is planned (the plan is only
 * needed when the tar is sent): every entry's path and the lstat fields the tar is made from
 * (type and mode, owner, size, mtime), plus ctime and inode, which any change of content moves
 * (user space cannot set ctime), and the Dockerfile's. Equal fingerprints mean the same tar
 * bytes: the entries fingerprinted are a superset of those sent — .dockerignore (itself an
 * entry) is only used to skip directories whose whole subtree it excludes, which it does when
 * it has no `!` exception and the Dockerfile does not lie below. An excluded file that changes
 * costs a needless upload, never a stale context.
 *
 * One walk with synchronous readdir and lstat: the CLI has nothing else to do meanwhile; 5,000
 * promise round trips through the thread pool took 3x as long, and planning (matching every
 * path against .dockerignore) as well as fingerprinting the plan took twice as long again.
 */
export async function contextFingerprint(loc: DockerfileLocation): Promise<string> {
  const { root } = loc;
  const lines = [statLine(loc.path, lstatSync(loc.path, { bigint: true }))]; // ENOENT: no Dockerfile
  let ignoreText = '';
  try {
    ignoreText = readFileSync(join(root, '.dockerignore'), 'utf8');
  } catch {
    // none: nothing is excluded
  }
  const ignore = parseDockerignore(ignoreText, { dockerfilePath: loc.inContext ?? '.' });
  const prune = !ignore.patterns.some((p) => p.startsWith('!'));
  const keep = (dir: string): boolean =>
    !prune || (loc.inContext?.startsWith(`${dir}/`) ?? false) || !ignore.isIgnored(dir);
  const walk = (rel: string): void => {
    const names = readdirSync(rel === '' ? root : join(root, rel)).sort();
    for (const name of names) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(root, p), { bigint: true });
      if (st.isDirectory()) {
        if (keep(p)) {
          lines.push(statLine(p, st));
          walk(p);
        }
      } else {
        lines.push(statLine(p, st));
      }
    }
  };
  walk('');
  return (await sha256())
    .update(`${FINGERPRINT_VERSION}\n${loc.sentAs}\n`)
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
