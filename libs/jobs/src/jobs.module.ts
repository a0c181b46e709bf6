import {
  DynamicModule,
  Global,
  Inject,
  Module,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import { Redis } from 'ioredis';
import { BuildRecord, QueueName } from '@stratum/contracts';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { BuildRecordStore } from './build-record-store';
import { BuildSecretStore } from './build-secret-store';
import {
  BuildProducer,
  CommitProducer,
  createQueue,
  OutgoingProducer,
  ProducerSettings,
  PushProducer,
} from './producers';
import { NotificationOutbox } from './notification-outbox';
import { createRedis } from './redis';
import {
  QUOTA_LEDGER,
  RedisQuotaLedger,
  RedisTagClaims,
  REPOSITORY_EVENTS,
  TAG_CLAIMS,
} from '@stratum/storage';
import { RepositoryOutboxSink } from './outbox';
import { WorkerRegistry } from './worker-registry';

function producerSettings(config: StratumConfig): ProducerSettings {
  return {
    attempts: config.jobAttempts,
    retentionSeconds: config.buildRetentionSeconds,
    outgoing: { attempts: config.git.outgoing.attempts, backoffMs: config.git.outgoing.backoffMs },
  };
}

/**
 * The chaos tests' crash point TEST_CRASH_POINT=build-record-written:<state>: the process
 * SIGKILLs itself right after writing a build record in that state, where a status or a
 * notification used to be enqueued after the write (and lost with the process).
 */
function crashAfterRecordWrite(config: StratumConfig): ((r: BuildRecord) => void) | undefined {
  const point = config.testCrashPoint;
  if (point === null || !point.startsWith('build-record-written:')) {
    return undefined;
  }
  const state = point.slice('build-record-written:'.length);
  return (r) => {
    if (r.state === state) {
      process.kill(process.pid, 'SIGKILL');
    }
  };
}

/** Injection token of the shared ioredis connection. */
export const REDIS = Symbol('REDIS');

@Global()
@Module({})
export class JobsModule implements OnApplicationBootstrap, OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly records: BuildRecordStore,
    private readonly builds: BuildProducer,
    private readonly commits: CommitProducer,
    private readonly pushes: PushProducer,
    private readonly outgoing: OutgoingProducer,
  ) {}

  /** Redis connection, build records and one producer per queue. */
  static forRoot(): DynamicModule {
    return {
      module: JobsModule,
      providers: [
        {
          provide: REDIS,
          inject: [STRATUM_CONFIG],
          useFactory: (config: StratumConfig) =>
            createRedis(config.redisUrl, `stratum-${process.pid}`, config.redisSentinel),
        },
        {
          provide: OutgoingProducer,
          inject: [REDIS, STRATUM_CONFIG],
          useFactory: (redis: Redis, config: StratumConfig) =>
            new OutgoingProducer(createQueue(QueueName.Outgoing, redis), producerSettings(config)),
        },
        {
          provide: NotificationOutbox,
          inject: [REDIS, STRATUM_CONFIG, OutgoingProducer],
          useFactory: (redis: Redis, config: StratumConfig, outgoing: OutgoingProducer) =>
            new NotificationOutbox(redis, outgoing, config.git.notify.urls),
        },
        {
          provide: BuildRecordStore,
          inject: [REDIS, STRATUM_CONFIG],
          useFactory: (redis: Redis, config: StratumConfig) =>
            new BuildRecordStore(redis, config.buildRetentionSeconds, crashAfterRecordWrite(config)),
        },
        {
          provide: BuildSecretStore,
          inject: [REDIS, STRATUM_CONFIG],
          useFactory: (redis: Redis, config: StratumConfig) =>
            new BuildSecretStore(redis, config.auth.secret),
        },
        {
          // REPOSITORY_QUOTAS counters, for the StorageModule's repository store (null: no quotas).
          provide: QUOTA_LEDGER,
          inject: [REDIS, STRATUM_CONFIG],
          useFactory: (redis: Redis, config: StratumConfig) =>
            config.repositoryQuotas.length > 0 ? new RedisQuotaLedger(redis, config.repositoryQuotas) : null,
        },
        {
          // Registry notifications of every tag write, for the StorageModule's repository store.
          // Written whatever this process's NOTIFY_URLS: the API's relay sends them to its own
          // receivers, so a worker need not be configured with them.
          provide: REPOSITORY_EVENTS,
          inject: [REDIS],
          useFactory: (redis: Redis) => new RepositoryOutboxSink(redis, `stratum-${process.pid}`),
        },
        // IMMUTABLE_TAGS: first-writer claims, so two racing first writers cannot both win.
        { provide: TAG_CLAIMS, inject: [REDIS], useFactory: (redis: Redis) => new RedisTagClaims(redis) },
        { provide: WorkerRegistry, inject: [REDIS], useFactory: (redis: Redis) => new WorkerRegistry(redis) },
        ...(
          [
            [BuildProducer, QueueName.Build],
            [PushProducer, QueueName.Push],
          ] as const
        ).map(([cls, queue]) => ({
          provide: cls,
          inject: [REDIS, STRATUM_CONFIG],
          useFactory: (redis: Redis, config: StratumConfig) =>
            new cls(createQueue(queue, redis), producerSettings(config)),
        })),
        {
          provide: CommitProducer,
          inject: [REDIS, STRATUM_CONFIG],
          useFactory: (redis: Redis, config: StratumConfig) =>
            new CommitProducer(createQueue(QueueName.Commit, redis), producerSettings(config), (name) =>
              createQueue(name, redis),
            ),
        },
      ],
      exports: [
        REDIS,
        QUOTA_LEDGER,
        REPOSITORY_EVENTS,
        TAG_CLAIMS,
        BuildRecordStore,
        BuildSecretStore,
        BuildProducer,
        CommitProducer,
        PushProducer,
        OutgoingProducer,
        WorkerRegistry,
        NotificationOutbox,
      ],
    };
  }

  /** The build records' update connection is made before the first job or request needs it. */
  onApplicationBootstrap(): void {
    this.records.prepare();
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([
      this.builds.close(),
      this.commits.close(),
      this.pushes.close(),
      this.outgoing.close(),
      this.records.close(),
    ]);
    this.redis.disconnect();
  }
}
