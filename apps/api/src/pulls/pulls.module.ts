import { Module } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { ImagePuller, RegistryClients } from '@stratum/registry';
import { BLOB_STORE, BlobStore, REPOSITORY_STORE, RepositoryStore } from '@stratum/storage';
import { PullController } from './pull.controller';
import { PullService } from './pull.service';

/** `POST /api/v1/images/pull`: images of other registries copied into ours (`stratum pull`). */
@Module({
  controllers: [PullController],
  providers: [
    {
      provide: ImagePuller,
      inject: [BLOB_STORE, REPOSITORY_STORE, STRATUM_CONFIG],
      useFactory: (blobs: BlobStore, repositories: RepositoryStore, config: StratumConfig) =>
        new ImagePuller(
          blobs,
          repositories,
          new RegistryClients(config.registryClients),
          config.registryClients.defaultRegistry,
        ),
    },
    PullService,
  ],
})
export class PullsModule {}
