import type { Hash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ContextPlan } from './context-tar';

/** Bump when what goes into the tar (or into the fingerprint) changes. */
const FINGERPRINT_VERSION = 'stratum-context-v3';

/** node:crypto is loaded on first use: loading it costs the CLI's start-up a few ms. */
async function sha256(): Promise<Hash> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256');
}

/**
 * Fingerprint of a planned context: every entry's path and the lstat fields the tar is made
 * from (type and mode, owner, size, mtime), plus ctime and inode, which any change of content
 * moves (user space cannot set ctime). Equal fingerprints mean the same tar bytes.
 */
export async function contextFingerprint(dir: string, plan: ContextPlan): Promise<string> {
  const root = resolve(dir);
  const paths = plan.files.map((f) => join(root, f));
  if (plan.extraDockerfile !== null) {
    paths.push(plan.extraDockerfile.source);
  }
  // Synchronous lstat: the CLI has nothing else to do meanwhile, and 5,000 promise round trips
  // through the thread pool took 3x as long.
  const lines = paths.map((p) => {
    const st = lstatSync(p, { bigint: true });
    return `${JSON.stringify(p)} ${st.mode} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${st.dev}:${st.ino}`;
  });
  return (await sha256())
    .update(`${FINGERPRINT_VERSION}\n${plan.dockerfile}\n${plan.extraDockerfile?.name ?? ''}\n`)
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

  private async file(dir: string, plan: ContextPlan): Promise<string> {
    const key = (await sha256())
      .update(`${this.serverUrl}\0${resolve(dir)}\0${plan.dockerfile}\0${plan.extraDockerfile?.source ?? ''}`)
      .digest('hex');
    return join(this.cacheDir, 'contexts', `${key}.json`);
  }

  /** The digest stored for exactly this fingerprint, or null. */
  async lookup(dir: string, plan: ContextPlan, fingerprint: string): Promise<string | null> {
    try {
      const v = JSON.parse(await readFile(await this.file(dir, plan), 'utf8')) as {
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
  async remember(dir: string, plan: ContextPlan, fingerprint: string, digest: string): Promise<void> {
    const file = await this.file(dir, plan);
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
