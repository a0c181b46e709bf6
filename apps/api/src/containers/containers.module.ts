import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { ImagesModule } from '@stratum/images';
import { ContainerRecordStore, REDIS } from '@stratum/jobs';
import { ImagesApiModule } from '../images/images-api.module';
import { ContainersController } from './containers.controller';
import { ContainersService } from './containers.service';
import { WorkersController } from './workers.controller';
import { WorkersService } from './workers.service';

/**
 * `/api/v1/containers` (run, inspect, remove, commit) and `/api/v1/workers` (the hosts holding
 * them, live or gone); brings the images API along.
 */
@Module({
  imports: [ImagesModule, ImagesApiModule],
  controllers: [ContainersController, WorkersController],
  providers: [
    {
      provide: ContainerRecordStore,
      inject: [REDIS, STRATUM_CONFIG],
      useFactory: (redis: Redis, config: StratumConfig) =>
        new ContainerRecordStore(redis, config.buildRetentionSeconds),
    },
    ContainersService,
    WorkersService,
  ],
})
export class ContainersModule implements OnApplicationShutdown {
  constructor(@Inject(ContainerRecordStore) private readonly records: ContainerRecordStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.records.close();
  }
}
