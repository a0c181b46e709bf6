import { Module } from '@nestjs/common';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { REDIS } from '@stratum/jobs';
import { ImagePusher, ImageTransfer, PushRecordStore, RegistryClients } from '@stratum/registry';
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
        const publicHost = config.api.publicUrl === null ? [] : [new URL(config.api.publicUrl).host];
        return new ImagePusher(
          new ImageTransfer(blobs, repositories),
          new RegistryClients(config.registryClients),
          records,
          publicHost,
        );
      },
    },
    PushProcessor,
  ],
  // PushRecordStore too: a build that pushes its result records the push before enqueueing it.
  exports: [PushProcessor, PushRecordStore],
})
export class PushWorkerModule {}
