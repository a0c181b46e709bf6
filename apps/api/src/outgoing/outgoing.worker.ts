import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { CommitStatusJobData, JobName, NotifyJobData, QueueName } from '@stratum/contracts';
import { createRedis, logErrorsThrottled, QUEUE_PREFIX } from '@stratum/jobs';
import { CommitStatusService } from './commit-status.service';
import { NotificationDeliveryService } from './notification-delivery.service';

/**
 * Consumes the `outgoing` queue in the API (every replica; BullMQ hands each job to one): calls
 * out of the system run here, never in a build worker, so a slow or dead forge holds no build.
 * The processor is thin: it hands the payload to the service.
 */
@Injectable()
export class OutgoingWorker implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('OutgoingWorker');
  private worker: Worker | null = null;
  private connection: Redis | null = null;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly statuses: CommitStatusService,
    private readonly notifications: NotificationDeliveryService,
  ) {}

  onApplicationBootstrap(): void {
    this.connection = createRedis(
      this.config.redisUrl,
      `stratum-api-${process.pid}-outgoing`,
      this.config.redisSentinel,
    );
    this.worker = new Worker(
      QueueName.Outgoing,
      async (job: Job) => {
        switch (job.name) {
          case JobName.CommitStatus:
            return this.statuses.send(job.data as CommitStatusJobData);
          case JobName.Notify:
            return this.notifications.deliver(job.data as NotifyJobData);
          default:
            throw new Error(`no handler for job "${job.name}" on queue "${QueueName.Outgoing}"`);
        }
      },
      { connection: this.connection, prefix: QUEUE_PREFIX, concurrency: 8 },
    );
    logErrorsThrottled(this.worker, this.logger, `queue ${QueueName.Outgoing}`);
    this.worker.on('failed', (job, err) => {
      const final = job !== undefined && job.attemptsMade >= (job.opts.attempts ?? 1);
      this.logger.warn(
        `${job?.name ?? 'job'} ${job?.id ?? '?'} attempt ${job?.attemptsMade ?? '?'} failed${final ? ' (gave up)' : ''}: ${err.message}`,
      );
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.worker?.close();
    this.connection?.disconnect();
  }
}
