import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The shared folder every developer and CI have beside the project (`../shared`): fixtures and
 * bench workloads. STRATUM_SHARED_DIR overrides it (a clone placed elsewhere).
 */
export const SHARED_DIR: string = (() => {
  const fromEnv = process.env.STRATUM_SHARED_DIR;
  if (fromEnv !== undefined && fromEnv !== '') {
    return resolve(fromEnv);
  }
  const beside = resolve(__dirname, '../../../shared');
  return existsSync(beside) ? beside : '/work/shared';
})();

/** `make-busybox-rootfs.sh OUT.tar`: the busybox base every test builds on. */
export const BUSYBOX_FIXTURE = join(SHARED_DIR, 'fixtures', 'make-busybox-rootfs.sh');

/** The benchmark workloads (one folder each). */
export const BENCH_WORKLOADS = join(SHARED_DIR, 'bench', 'workloads');
