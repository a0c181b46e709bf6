import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { requireTools } from './tools';

/** Where the Debian base tar is kept between test runs: made once per machine. */
const CACHE_DIR = '/var/tmp/stratum-test-cache';
/** infra/fresh-root-check.sh's pristine `debootstrap --variant=minbase bookworm` root, reused when present. */
const FRESH_ROOT = '/var/tmp/stratum-fresh-root-cache/bookworm-minbase';

/**
 * A Debian 12 (bookworm) minbase root filesystem as an uncompressed tar, for
 * `POST /api/v1/images/import`: the base a user's `FROM debian:bookworm` Dockerfile needs on
 * a machine that reaches no image registry. Made once per machine (under /var/tmp) from the
 * fresh-root check's cached root when there is one, else with `debootstrap --variant=minbase
 * bookworm` from deb.debian.org. /dev, /proc and /sys are left empty: the runtime mounts them.
 */
export function debianBookwormTar(): string {
  const cached = join(CACHE_DIR, 'bookworm-minbase.tar');
  if (existsSync(cached)) {
    return cached;
  }
  execFileSync('mkdir', ['-p', CACHE_DIR]);
  const tmp = `${cached}.${process.pid}.tmp`;
  let root = FRESH_ROOT;
  let made: string | null = null;
  try {
    if (!existsSync(join(FRESH_ROOT, 'usr/bin/apt-get'))) {
      requireTools('debootstrap');
      made = mkdtempSync(join(CACHE_DIR, 'debootstrap-'));
      root = made;
      execFileSync('debootstrap', ['--variant=minbase', 'bookworm', root, 'http://deb.debian.org/debian'], {
        stdio: 'ignore',
        timeout: 15 * 60_000,
      });
    }
    execFileSync(
      'tar',
      [
        '-C',
        root,
        '--numeric-owner',
        '--exclude=./dev/*',
        '--exclude=./proc/*',
        '--exclude=./sys/*',
        '--exclude=./run/*',
        '-cf',
        tmp,
        '.',
      ],
      { stdio: 'ignore' },
    );
    renameSync(tmp, cached); // atomic: a concurrent test sees the whole tar or none
  } finally {
    rmSync(tmp, { force: true });
    if (made !== null) {
      rmSync(made, { recursive: true, force: true });
    }
  }
  return cached;
}
