import { readdir } from 'node:fs/promises';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { CONTAINER_ID, ContainerState } from '@stratum/contracts';
import { ContainerFilesystems } from '@stratum/images';
import { ContainerRecordStore } from '@stratum/jobs';
import { CONTAINERS_ROOT } from './container-tokens';
import { RunContainerProcessor } from './run-container.processor';

const SWEEP_INTERVAL_MS = 5 * 60_000;

/**
 * Safety net for removed containers' files on this host (a remove-container job on this
 * worker's queue normally deletes them): a sweep at start and every few minutes deletes the
 * files of containers whose record is gone or says removed. At start it also marks containers
 * this worker was running when it died as exited.
 */
@Injectable()
export class ContainerJanitor implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('ContainerJanitor');
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(CONTAINERS_ROOT) private readonly root: string,
    private readonly records: ContainerRecordStore,
    private readonly filesystems: ContainerFilesystems,
    private readonly runs: RunContainerProcessor,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.sweep(true);
    this.timer = setInterval(() => void this.serial(() => this.sweep(false)), SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer !== null) {
      clearInterval(this.timer);
    }
    await this.chain;
  }

  private serial(task: () => Promise<void>): Promise<void> {
    const next = this.chain.then(task).catch((err: unknown) => {
      this.logger.warn(`container clean-up failed: ${err instanceof Error ? err.message : String(err)}`);
    });
    this.chain = next;
    return next;
  }

  private async sweep(atStart: boolean): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch {
      return;
    }
    for (const id of names.filter((n) => CONTAINER_ID.test(n))) {
      const record = await this.records.get(id);
      if (record === null || record.state === ContainerState.Removed) {
        await this.filesystems.remove(this.filesystems.describe(id, []));
        this.logger.log(`removed the files of container ${id}`);
      } else if (
        atStart &&
        record.state === ContainerState.Running &&
        record.workerId === this.config.worker.id &&
        !this.runs.active.has(id)
      ) {
        await this.records.update(id, (r) => {
          r.state = ContainerState.Exited;
          r.error = 'the worker restarted while it ran';
          r.finishedAt = new Date().toISOString();
        });
      }
    }
  }
}
