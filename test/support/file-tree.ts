import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

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

/** A gitlink of {@link makeBareRepo}: the submodule `name` at `path`, cloned from `url` at `commit`. */
export interface GitSubmoduleLink {
  readonly name: string;
  readonly path: string;
  readonly url: string;
  readonly commit: string;
}

/**
 * A bare repository `<root>/<name>.git` (made from the work tree `<root>/<name>-work`) holding
 * `files` and gitlinks to `subs` (.gitmodules entries and index entries, as `git submodule add`
 * leaves them); git runs with `home`'s configuration only ({@link runGit}). Answers its commit.
 */
export function makeBareRepo(
  home: string,
  root: string,
  name: string,
  files: Record<string, string>,
  subs: readonly GitSubmoduleLink[] = [],
): string {
  const git = (cwd: string, ...args: string[]): string => runGit(home, cwd, ...args);
  const w = join(root, `${name}-work`);
  mkdirSync(w, { recursive: true });
  git(w, 'init', '--quiet', '-b', 'main', '.');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(w, path)), { recursive: true });
    writeFileSync(join(w, path), text);
  }
  if (subs.length > 0) {
    writeFileSync(
      join(w, '.gitmodules'),
      subs.map((m) => `[submodule "${m.name}"]\n\tpath = ${m.path}\n\turl = ${m.url}\n`).join(''),
    );
  }
  git(w, 'add', '.');
  // After `add .`, which would drop a gitlink whose directory is not there.
  for (const m of subs) {
    git(w, 'update-index', '--add', '--cacheinfo', `160000,${m.commit},${m.path}`);
  }
  git(w, 'commit', '--quiet', '-m', name);
  git(root, 'clone', '--quiet', '--bare', w, join(root, `${name}.git`));
  return git(w, 'rev-parse', 'HEAD');
}
