import { execFileSync } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Fails (never skips) when a program a test needs is missing, naming it: a skipped test checks
 * nothing, and on a fresh machine it would hide a missing install step (infra/test.sh installs
 * every Debian package a test runs). Names without a `/` are looked up on the PATH.
 */
export function requireTools(...tools: string[]): void {
  const missing = tools.filter((tool) => !toolExists(tool));
  if (missing.length > 0) {
    throw new Error(
      `missing program(s) this test needs: ${missing.join(', ')} — infra/test.sh installs them (TEST_PACKAGES in infra/lib.sh)`,
    );
  }
}

function toolExists(tool: string): boolean {
  if (tool.includes('/')) {
    try {
      accessSync(tool, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Mount points at or below `dir` (from /proc/self/mountinfo, which writes a space as \040). */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[4].replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/**
 * Unmounts what a program the test ran (dockerd, podman) left mounted below `dir`, deepest first,
 * so the test's directory can be removed: dockerd keeps its data root a private bind mount of
 * itself on a host whose / is not shared (a chroot), and does not always undo it on SIGTERM.
 */
export function unmountUnder(dir: string): void {
  for (const m of mountsUnder(dir).sort().reverse()) {
    execFileSync('umount', [m], { stdio: 'ignore' });
  }
}

/**
 * The tmpfs dir a worker keeps its runtime state and bundles in (its scratch dir's `runc` links
 * to `<dir>/runc`), or null when they are in the scratch dir itself.
 */
export function workerRunDir(scratch: string): string | null {
  try {
    return dirname(readlinkSync(join(scratch, 'runc')));
  } catch {
    return null; // not a link
  }
}

/**
 * Removes the tmpfs dirs ({@link workerRunDir}) of the stopped workers that used `dataDir`,
 * which removing the data dir would leave behind.
 */
export function removeWorkerRunDirs(dataDir: string): void {
  let workers: string[];
  try {
    workers = readdirSync(join(dataDir, 'worker'));
  } catch {
    return;
  }
  for (const w of workers) {
    const run = workerRunDir(join(dataDir, 'worker', w));
    if (run !== null) {
      rmSync(run, { recursive: true, force: true });
    }
  }
}
