import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { nameBeneath } from '@stratum/confine';

const execFileP = promisify(execFile);

/** How long a container of the old attempt may take to go once deleted. */
const GONE_TIMEOUT_MS = 10_000;

/**
 * Before a taken-over build runs its steps (issue 20): makes sure the RUN containers of the
 * attempt before are gone where this worker can see them, so that a step never runs twice at
 * once. A worker that lost its lock without dying (hung, stopped, cut off from Redis) still
 * runs its step; its death watch only fires when it dies.
 *
 * Same host (the old worker's scratch dir `<DATA_DIR>/worker/<id>` is on this machine: one
 * DATA_DIR, several worker processes): the old attempt's containers are those of the old
 * worker's runc root whose rootfs lies in that worker's job dir of this build; each one still
 * there is deleted with `runc delete --force` and awaited. Another host: nothing of it is
 * visible here; its death watch removes its containers when its worker dies, and that is
 * what the log says.
 */
@Injectable()
export class OldAttemptCheck {
  constructor(@Inject(STRATUM_CONFIG) private readonly config: StratumConfig) {}

  /** Clears what is left of `oldWorker`'s attempt of `buildId`; a line for the build's log. */
  async clear(buildId: string, oldWorker: string): Promise<string> {
    const scratch = nameBeneath(dirname(this.config.worker.scratchDir), oldWorker, 'worker id');
    const root = join(scratch, 'runc');
    const jobDir = `${nameBeneath(join(scratch, 'jobs'), buildId, 'build id')}/`;
    try {
      await access(root);
    } catch {
      return `worker ${oldWorker}'s containers are not on this host: its death watch removes them when it dies`;
    }
    const ids = (await this.ofBuild(root, jobDir)).sort();
    if (ids.length === 0) {
      return `no container of worker ${oldWorker}'s attempt is left on this host (runc state)`;
    }
    for (const id of ids) {
      await this.runc(root, ['delete', '--force', id]).catch(() => undefined);
    }
    const deadline = Date.now() + GONE_TIMEOUT_MS;
    for (;;) {
      const left = await this.ofBuild(root, jobDir);
      if (left.length === 0) {
        break;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `the container(s) ${left.join(', ')} of worker ${oldWorker}'s attempt are still there ${GONE_TIMEOUT_MS} ms after runc delete --force: not running the steps twice at once`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return `worker ${oldWorker}'s attempt still had ${ids.length} container(s) on this host (${ids.join(', ')}): killed before the steps run again`;
  }

  /** Ids of the containers of `root` whose rootfs lies below `jobDir`. */
  private async ofBuild(root: string, jobDir: string): Promise<string[]> {
    const listed = await this.runc(root, ['list', '--format', 'json']).catch(() => 'null');
    const all = (JSON.parse(listed.trim() === '' ? 'null' : listed) ?? []) as {
      id: string;
      bundle?: string;
    }[];
    const mine: string[] = [];
    for (const c of all) {
      const state = await this.runc(root, ['state', c.id]).catch(() => null);
      if (state === null) {
        continue; // gone meanwhile
      }
      const { rootfs } = JSON.parse(state) as { rootfs?: string };
      if (rootfs !== undefined && rootfs.startsWith(jobDir)) {
        mine.push(c.id);
      }
    }
    return mine;
  }

  private async runc(root: string, args: string[]): Promise<string> {
    const { stdout } = await execFileP(this.config.runtimePath, ['--root', root, ...args], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    return stdout;
  }
}
