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
      provide: ImagePusher,
      inject: [BLOB_STORE, REPOSITORY_STORE, REDIS, STRATUM_CONFIG],
      useFactory: (blobs: BlobStore, repositories: RepositoryStore, redis: Redis, config: StratumConfig) => {
        const publicHost = config.api.publicUrl === null ? [] : [new URL(config.api.publicUrl).host];
        return new ImagePusher(
          new ImageTransfer(blobs, repositories),
          new RegistryClients(config.registryClients),
          new PushRecordStore(redis, config.buildRetentionSeconds, config.auth.secret),
          publicHost,
        );
      },
    },
    PushProcessor,
  ],
  exports: [PushProcessor],
})
export class PushWorkerModule {}
