import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { PushProducer, REDIS } from '@stratum/jobs';
import {
  ImagePusher,
  ImageTransfer,
  PushRecordStore,
  PushSubmitter,
  pushSubmitterOptions,
  RegistryClients,
} from '@stratum/registry';
import { BLOB_STORE, BlobStore, REPOSITORY_STORE, RepositoryStore } from '@stratum/storage';
import { PushProcessor } from './push.processor';

/** The `push` job handler and what it uses (export PushProcessor; the worker's JOB_HANDLERS lists it). */
@Module({
  providers: [
    {
      provide: PushRecordStore,
      inject: [REDIS, STRATUM_CONFIG],
      useFactory: (redis: Redis, config: StratumConfig) =>
        new PushRecordStore(redis, config.buildRetentionSeconds, config.auth.secret),
    },
    {
      provide: ImagePusher,
      inject: [BLOB_STORE, REPOSITORY_STORE, PushRecordStore, STRATUM_CONFIG],
      useFactory: (
        blobs: BlobStore,
        repositories: RepositoryStore,
        records: PushRecordStore,
        config: StratumConfig,
      ) => {
        return new ImagePusher(
          new ImageTransfer(blobs, repositories),
          new RegistryClients(config.registryClients),
          records,
          pushSubmitterOptions(config).localRegistries,
        );
      },
    },
    {
      provide: PushSubmitter,
      inject: [PushRecordStore, PushProducer, STRATUM_CONFIG],
      useFactory: (records: PushRecordStore, producer: PushProducer, config: StratumConfig) =>
        new PushSubmitter(records, producer, pushSubmitterOptions(config)),
    },
    PushProcessor,
  ],
  // PushSubmitter too: a build that pushes its result submits the push as the push API does.
  exports: [PushProcessor, PushSubmitter],
})
export class PushWorkerModule implements OnApplicationShutdown {
  constructor(@Inject(PushRecordStore) private readonly records: PushRecordStore) {}

  /** After the queue workers stopped (beforeApplicationShutdown): no update is under way. */
  async onApplicationShutdown(): Promise<void> {
    await this.records.close();
  }
}
