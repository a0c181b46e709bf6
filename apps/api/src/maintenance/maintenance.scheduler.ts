import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob } from 'cron';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { isErrorCode } from '@stratum/contracts';
import { ProjectStore } from '../projects/project-store';
import { MaintenanceService } from './maintenance.service';

const RECONCILE_MS = 30_000;
const PROJECT_JOB = 'project:';

/**
 * Cron jobs of every replica: the maintenance run (MAINTENANCE_SCHEDULE) and each project's
 * rebuild schedule. Every replica fires them; a Redis lock (gc) or a claimed fire time
 * (rebuilds) lets one do the work. Project schedules are re-read every 30 s, so a change made
 * through any replica reaches all.
 */
@Injectable()
export class MaintenanceScheduler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('MaintenanceScheduler');
  private timer: NodeJS.Timeout | null = null;
  private readonly cronOf = new Map<string, string>();

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly registry: SchedulerRegistry,
    private readonly maintenance: MaintenanceService,
    private readonly projects: ProjectStore,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const schedule = this.config.maintenance.schedule;
    if (schedule !== null) {
      const job = CronJob.from({
        cronTime: schedule,
        onTick: () => {
          this.maintenance.gc('schedule').catch((err: unknown) => {
            if (!(
              err instanceof Error &&
              'code' in err &&
              isErrorCode(err.code) &&
              err.code === 'MAINTENANCE_BUSY'
            )) {
              this.logger.warn(`scheduled maintenance failed: ${String(err)}`);
            }
          });
        },
      });
      this.registry.addCronJob('maintenance', job);
      job.start();
    }
    const fsckSchedule = this.config.maintenance.fsckSchedule;
    if (fsckSchedule !== null) {
      const job = CronJob.from({
        cronTime: fsckSchedule,
        onTick: () => {
          this.maintenance.fsck('schedule').catch((err: unknown) => {
            if (!(err instanceof Error && 'code' in err && err.code === 'MAINTENANCE_BUSY')) {
              this.logger.warn(`scheduled fsck failed: ${String(err)}`);
            }
          });
        },
      });
      this.registry.addCronJob('fsck', job);
      job.start();
    }
    await this.reconcile().catch((err: unknown) => this.logger.warn(`project schedules: ${String(err)}`));
    this.timer = setInterval(() => {
      this.reconcile().catch((err: unknown) => this.logger.warn(`project schedules: ${String(err)}`));
    }, RECONCILE_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
    }
    for (const name of this.cronOf.keys()) {
      this.remove(name);
    }
  }

  /** Makes the cron jobs match the projects' schedules. */
  async reconcile(): Promise<void> {
    const wanted = new Map<string, string>();
    for (const p of await this.projects.list()) {
      if (p.schedule !== null) {
        wanted.set(`${PROJECT_JOB}${p.name}`, p.schedule);
      }
    }
    for (const [name, cron] of this.cronOf) {
      if (wanted.get(name) !== cron) {
        this.remove(name);
      }
    }
    for (const [name, cron] of wanted) {
      if (this.cronOf.has(name)) {
        continue;
      }
      const project = name.slice(PROJECT_JOB.length);
      const job = CronJob.from({
        cronTime: cron,
        onTick: () => {
          void this.fire(project);
        },
      });
      this.registry.addCronJob(name, job);
      job.start();
      this.cronOf.set(name, cron);
    }
  }

  private async fire(project: string): Promise<void> {
    // One replica per fire time: the minute names the slot.
    const slot = `rebuild:${project}:${new Date().toISOString().slice(0, 16)}`;
    if (await this.maintenance.claim(slot, 10 * 60_000)) {
      await this.maintenance.rebuild(project, 'schedule').catch(() => undefined);
    }
  }

  private remove(name: string): void {
    try {
      this.registry.deleteCronJob(name);
    } catch {
      // already gone
    }
    this.cronOf.delete(name);
  }
}
