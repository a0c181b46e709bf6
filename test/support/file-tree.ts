import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Relative path -> "dir MODE" | "link TARGET" | "file MODE SHA256" | "other MODE" of every path
 * below `root` (owners and times left out): two trees compare equal when their contents do.
 */
export function fileTreeSummary(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel))) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(root, p));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) {
        out.set(p, `link ${readlinkSync(join(root, p))}`);
      } else if (st.isDirectory()) {
        out.set(p, `dir ${mode}`);
        walk(p);
      } else if (st.isFile()) {
        out.set(
          p,
          `file ${mode} ${createHash('sha256')
            .update(readFileSync(join(root, p)))
            .digest('hex')}`,
        );
      } else {
        out.set(p, `other ${mode}`);
      }
    }
  };
  walk('');
  return out;
}

/**
 * `git ARGS` in `cwd` with only `home`'s configuration (no system config) and a fixed author
 * and committer; its trimmed stdout.
 */
export function runGit(home: string, cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: home,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@example.com',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.com',
    },
  })
    .toString()
    .trim();
}
