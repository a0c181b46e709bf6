import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { ImagesModule } from '@stratum/images';
import { ContainerRecordStore, REDIS } from '@stratum/jobs';
import { ImagesApiModule } from '../images/images-api.module';
import { ContainersController } from './containers.controller';
import { ContainersService } from './containers.service';

/** `/api/v1/containers` (run, inspect, remove, commit); brings the images API along. */
@Module({
  imports: [ImagesModule, ImagesApiModule],
  controllers: [ContainersController],
  providers: [
    {
      provide: ContainerRecordStore,
      inject: [REDIS, STRATUM_CONFIG],
      useFactory: (redis: Redis, config: StratumConfig) =>
        new ContainerRecordStore(redis, config.buildRetentionSeconds),
    },
    ContainersService,
  ],
})
export class ContainersModule implements OnApplicationShutdown {
  constructor(@Inject(ContainerRecordStore) private readonly records: ContainerRecordStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.records.close();
  }
}
