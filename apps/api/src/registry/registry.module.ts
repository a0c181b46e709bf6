import { join } from 'node:path';
import { Inject, Module, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { REDIS } from '@stratum/jobs';
import { RegistryService, UploadSessionStore } from '@stratum/registry';
import { BLOB_STORE, BlobStore, REPOSITORY_STORE, RepositoryStore } from '@stratum/storage';
import {
  AllowAllRegistryAuthorizer,
  REGISTRY_AUTHORIZER,
  RegistryAccessGuard,
} from './registry-access.guard';
import { RegistryController } from './registry.controller';
import { registryRequestMiddleware } from './registry-request.middleware';

/** How long an idle upload session lives (each chunk renews it). */
const UPLOAD_TTL_SECONDS = 24 * 3600;
const SWEEP_INTERVAL_MS = 3600 * 1000;

/**
 * The registry API at /v2/ over the configured storage (StorageModule) and Redis (JobsModule).
 * Swap {@link REGISTRY_AUTHORIZER} to add authentication.
 */
@Module({
  controllers: [RegistryController],
  providers: [
    {
      provide: UploadSessionStore,
      inject: [REDIS, STRATUM_CONFIG],
      useFactory: async (redis: Redis, config: StratumConfig): Promise<UploadSessionStore> => {
        // Local disk even with S3: see UploadSessionStore.
        const store = new UploadSessionStore(
          redis,
          join(config.dataDir, 'registry', 'uploads'),
          UPLOAD_TTL_SECONDS,
        );
        await store.init();
        return store;
      },
    },
    {
      provide: RegistryService,
      inject: [BLOB_STORE, REPOSITORY_STORE, UploadSessionStore, REDIS],
      useFactory: (
        blobs: BlobStore,
        repositories: RepositoryStore,
        uploads: UploadSessionStore,
        redis: Redis,
      ) => new RegistryService(blobs, repositories, uploads, redis),
    },
    { provide: REGISTRY_AUTHORIZER, useClass: AllowAllRegistryAuthorizer },
    RegistryAccessGuard,
  ],
  exports: [RegistryService],
})
export class RegistryModule implements OnModuleInit, OnModuleDestroy {
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    adapterHost: HttpAdapterHost,
    @Inject(RegistryService) private readonly registry: RegistryService,
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
}
