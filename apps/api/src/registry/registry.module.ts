import { Inject, Module, OnApplicationShutdown, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { PushProducer, REDIS } from '@stratum/jobs';
import {
  ImageTransfer,
  PullThroughCache,
  PushRecordStore,
  PushSubmitter,
  pushSubmitterOptions,
  RegistryClients,
  RegistryService,
  UploadSessionStore,
} from '@stratum/registry';
import {
  BLOB_STORE,
  BlobStore,
  REPOSITORY_STORE,
  RepositoryStore,
  UPLOAD_PART_STORE,
  UploadPartStore,
} from '@stratum/storage';
import { AuthModule } from '../auth/auth.module';
import { RegistryAccessGuard } from './registry-access.guard';
import { RegistryController } from './registry.controller';
import { PushController } from './push.controller';
import { PushService } from './push.service';
import { registryNotifier } from './registry-notifications';
import { registryRequestMiddleware } from './registry-request.middleware';

/** How long an idle upload session lives (each chunk renews it). */
const UPLOAD_TTL_SECONDS = 24 * 3600;
const SWEEP_INTERVAL_MS = 3600 * 1000;

/**
 * The registry API at /v2/ over the configured storage (StorageModule) and Redis (JobsModule),
 * guarded by AuthModule's REGISTRY_AUTHORIZER, with the pull-through mirrors of REGISTRY_MIRRORS;
 * push requests (`POST /api/v1/images/:ref/push`, `GET /api/v1/pushes/:id`).
 */
@Module({
  imports: [AuthModule],
  controllers: [RegistryController, PushController],
  providers: [
    {
      provide: UploadSessionStore,
      inject: [REDIS, UPLOAD_PART_STORE],
      // The bytes go to the shared store, so any replica can take any request of an upload.
      useFactory: (redis: Redis, parts: UploadPartStore) =>
        new UploadSessionStore(redis, parts, UPLOAD_TTL_SECONDS),
    },
    {
      provide: RegistryService,
      inject: [BLOB_STORE, REPOSITORY_STORE, UploadSessionStore, REDIS],
      useFactory: (
        blobs: BlobStore,
        repositories: RepositoryStore,
        uploads: UploadSessionStore,
        redis: Redis,
      ) =>
        new RegistryService(blobs, repositories, uploads, redis, {
          onManifestEvent: registryNotifier(redis),
        }),
    },
    RegistryAccessGuard,
    {
      provide: ImageTransfer,
      inject: [BLOB_STORE, REPOSITORY_STORE],
      useFactory: (blobs: BlobStore, repositories: RepositoryStore) => new ImageTransfer(blobs, repositories),
    },
    {
      provide: PullThroughCache,
      inject: [STRATUM_CONFIG, ImageTransfer, REPOSITORY_STORE, REDIS],
      useFactory: (
        config: StratumConfig,
        transfer: ImageTransfer,
        repositories: RepositoryStore,
        redis: Redis,
      ) => {
        const { mirrors } = config.registryClients;
        if (mirrors.length === 0) {
          return null;
        }
        const clients = new RegistryClients(config.registryClients);
        const entries = mirrors.map((m) => {
          const url = new URL(m.upstream);
          const credentials =
            m.username !== null && m.password !== null
              ? { username: m.username, password: m.password }
              : null;
          return {
            prefix: m.prefix,
            client: clients.clientFor(url.host, credentials, url.protocol === 'http:'),
          };
        });
        return new PullThroughCache(entries, transfer, repositories, redis);
      },
    },
    {
      provide: PushRecordStore,
      inject: [REDIS, STRATUM_CONFIG],
      useFactory: (redis: Redis, config: StratumConfig) =>
        new PushRecordStore(redis, config.buildRetentionSeconds, config.auth.secret),
    },
    {
      provide: PushSubmitter,
      inject: [PushRecordStore, PushProducer, STRATUM_CONFIG],
      useFactory: (records: PushRecordStore, producer: PushProducer, config: StratumConfig) =>
        new PushSubmitter(records, producer, pushSubmitterOptions(config)),
    },
    PushService,
  ],
  exports: [RegistryService, PushService],
})
export class RegistryModule implements OnModuleInit, OnModuleDestroy, OnApplicationShutdown {
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    adapterHost: HttpAdapterHost,
    @Inject(RegistryService) private readonly registry: RegistryService,
    @Inject(PushRecordStore) private readonly pushes: PushRecordStore,
  ) {
    // Runs while Nest builds the module graph, i.e. before app.init() installs the global body
    // parsers, so this middleware comes first in Express's stack (see registry-request.middleware.ts).
    // Without an HTTP adapter (an application context) there is nothing to install.
    adapterHost.httpAdapter?.use(registryRequestMiddleware);
  }

  onModuleInit(): void {
    const sweep = (): void => {
      this.registry.sweepUploads().catch(() => undefined);
    };
    sweep();
    this.sweeper = setInterval(sweep, SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.sweeper);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.pushes.close();
  }
}
