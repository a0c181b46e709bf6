import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ConfigModule, StratumConfig } from '@stratum/config';
import { JobsModule, StoreProbeModule } from '@stratum/jobs';
import { StorageModule } from '@stratum/storage';
import { BadgesModule } from './badges/badges.module';
import { BuildsModule } from './builds/builds.module';
import { ContainersModule } from './containers/containers.module';
import { DashboardModule } from './dashboard/dashboard.module';
import { ErrorFilter } from './common/error.filter';
import { HealthController } from './health/health.controller';
import { HooksModule } from './hooks/hooks.module';
import { MaintenanceModule } from './maintenance/maintenance.module';
import { MetricsModule } from './metrics/metrics.module';
import { OutgoingModule } from './outgoing/outgoing.module';
import { QueuesModule } from './queues/queues.module';
import { ProjectsModule } from './projects/projects.module';
import { PullsModule } from './pulls/pulls.module';
import { RegistryModule } from './registry/registry.module';

@Module({})
export class AppModule {
  static forRoot(config: StratumConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        StorageModule,
        JobsModule.forRoot(),
        // Refuses to start when this process does not see the store the others use.
        StoreProbeModule.forRoot('api'),
        BuildsModule,
        RegistryModule,
        PullsModule,
        ContainersModule,
        ProjectsModule,
        HooksModule,
        BadgesModule,
        OutgoingModule,
        MaintenanceModule,
        QueuesModule,
        MetricsModule,
        DashboardModule,
      ],
      controllers: [HealthController],
      providers: [{ provide: APP_FILTER, useClass: ErrorFilter }],
    };
  }
}
