import { join } from 'node:path';
import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { ContainerFilesystems, ImageService, ImagesModule } from '@stratum/images';
import { ContainerRecordStore, REDIS } from '@stratum/jobs';
import { LayerCache } from '@stratum/layers';
import { BLOB_STORE, BlobStore } from '@stratum/storage';
import { workerPaths } from '../host-sweeper';
import { CommitProcessor } from './commit.processor';
import { ContainerJanitor } from './container-janitor';
import { CONTAINERS_ROOT } from './container-tokens';
import { RemoveContainerProcessor } from './remove-container.processor';
import { RunContainerProcessor } from './run-container.processor';

/**
 * Containers on this host: `run-container`, `commit` and `remove-container` job handlers
 * (exported; the worker's JOB_HANDLERS lists them), the filesystems they use, and the
 * clean-up of removed containers' files.
 */
@Module({
  imports: [ImagesModule],
  providers: [
    {
      provide: CONTAINERS_ROOT,
      inject: [STRATUM_CONFIG],
      useFactory: (config: StratumConfig) => join(workerPaths(config).scratch, 'containers'),
    },
    {
      // The host's one LayerCache and RuncRuntime come from WorkerModule (global).
      provide: ContainerFilesystems,
      inject: [BLOB_STORE, ImageService, LayerCache, CONTAINERS_ROOT],
      useFactory: (blobs: BlobStore, images: ImageService, cache: LayerCache, root: string) =>
        new ContainerFilesystems({ blobs, images, cache, root }),
    },
    {
      provide: ContainerRecordStore,
      inject: [REDIS, STRATUM_CONFIG],
      useFactory: (redis: Redis, config: StratumConfig) =>
        new ContainerRecordStore(redis, config.buildRetentionSeconds),
    },
    RunContainerProcessor,
    CommitProcessor,
    RemoveContainerProcessor,
    ContainerJanitor,
  ],
  exports: [RunContainerProcessor, CommitProcessor, RemoveContainerProcessor],
})
export class ContainersWorkerModule implements OnApplicationShutdown {
  constructor(@Inject(ContainerRecordStore) private readonly records: ContainerRecordStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.records.close();
  }
}

export { CommitProcessor, RemoveContainerProcessor, RunContainerProcessor };
