import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

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
