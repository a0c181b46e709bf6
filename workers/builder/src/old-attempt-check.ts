import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { nameBeneath } from '@stratum/confine';
import { WorkerAdvert, WorkerRegistry } from '@stratum/jobs';

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
 * there is deleted with `runc delete --force` and awaited.
 *
 * Another host: its containers are not visible here, but its liveness record (heartbeat) in
 * Redis is. Lapsed: the worker is gone (dead, or hung and so not writing), and its death watch
 * removes its containers when it dies. Live and still listing this build among its jobs: the
 * old attempt runs there (its worker stalled past its lock and came back); this attempt waits
 * for it to stop (a worker whose lock renewal fails stops the build) or to go, up to
 * WORKER_LOST_MS, and fails otherwise (retried later) rather than run the steps twice at once.
 */
@Injectable()
export class OldAttemptCheck {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly registry: WorkerRegistry,
  ) {}

  private now(): number {
    return Date.now();
  }

  /**
   * Clears what is left of `oldWorker`'s attempt of `buildId`: a line for the build's log, and
   * how long it waited for the old attempt to stop (0: not at all).
   */
  async clear(buildId: string, oldWorker: string): Promise<{ message: string; waitedMs: number }> {
    const scratch = nameBeneath(dirname(this.config.worker.scratchDir), oldWorker, 'worker id');
    const root = join(scratch, 'runc');
    const jobDir = `${nameBeneath(join(scratch, 'jobs'), buildId, 'build id')}/`;
    try {
      await access(root);
    } catch {
      return this.otherHost(buildId, oldWorker);
    }
    const ids = (await this.ofBuild(root, jobDir)).sort();
    if (ids.length === 0) {
      return {
        message: `no container of worker ${oldWorker}'s attempt is left on this host (runc state)`,
        waitedMs: 0,
      };
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
    return {
      message: `worker ${oldWorker}'s attempt still had ${ids.length} container(s) on this host (${ids.join(', ')}): killed before the steps run again`,
      waitedMs: 0,
    };
  }

  /** The old worker runs on another host: waits while its liveness record says it runs `buildId`. */
  private async otherHost(
    buildId: string,
    oldWorker: string,
  ): Promise<{ message: string; waitedMs: number }> {
    const { lostMs, heartbeatMs } = this.config.worker;
    const started = this.now();
    let advert = await this.registry.advert(oldWorker);
    let waited = false;
    while (advert !== null && runsBuild(advert, buildId)) {
      waited = true;
      const waitedMs = this.now() - started;
      if (waitedMs >= lostMs) {
        const age = advert.seenAt === undefined ? '' : ` (heartbeat ${this.now() - advert.seenAt} ms ago)`;
        throw new Error(
          `worker ${oldWorker}, which ran the attempt before, is alive${age} and still runs this build ${waitedMs} ms after it was taken over (WORKER_LOST_MS=${lostMs}): not running the steps twice at once; the attempt is retried`,
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(250, heartbeatMs)));
      advert = await this.registry.advert(oldWorker);
    }
    const waitedMs = waited ? this.now() - started : 0;
    if (advert === null) {
      return {
        message:
          `worker ${oldWorker} is gone (its heartbeat lapsed${waitedMs > 0 ? ` after ${waitedMs} ms` : ''}); ` +
          `its containers are not on this host: its death watch removes them when it dies`,
        waitedMs,
      };
    }
    return {
      message: `worker ${oldWorker} is alive on another host and stopped its attempt of this build${waitedMs > 0 ? ` after ${waitedMs} ms` : ''}`,
      waitedMs,
    };
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

/** Whether `advert` lists `buildId`'s job (or one of its platforms'); an older worker's, listing none, may. */
function runsBuild(advert: WorkerAdvert, buildId: string): boolean {
  return advert.jobs === undefined || advert.jobs.some((j) => j === buildId || j.startsWith(`${buildId}.`));
}
