import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { BuildSecretStore, REDIS } from '@stratum/jobs';
import { ProjectBuilder } from './project-builder';
import { ProjectSecretStore } from './project-secret-store';
import { ProjectSecretsController } from './project-secrets.controller';
import { ProjectSecretsService } from './project-secrets.service';
import { ProjectStore } from './project-store';
import { ProjectsController } from './projects.controller';
import { ProjectsService } from './projects.service';

/** `/api/v1/projects` and what turns a project's commit into a build (used by hooks and maintenance). */
@Module({
  controllers: [ProjectsController, ProjectSecretsController],
  providers: [
    { provide: ProjectStore, inject: [REDIS], useFactory: (redis: Redis) => new ProjectStore(redis) },
    {
      provide: ProjectSecretStore,
      inject: [REDIS, STRATUM_CONFIG, BuildSecretStore],
      useFactory: (redis: Redis, config: StratumConfig, bundles: BuildSecretStore) =>
        new ProjectSecretStore(redis, config.auth.secret, bundles),
    },
    ProjectSecretsService,
    ProjectBuilder,
    ProjectsService,
  ],
  exports: [ProjectStore, ProjectBuilder, ProjectSecretStore],
})
export class ProjectsModule implements OnApplicationShutdown {
  constructor(@Inject(ProjectStore) private readonly store: ProjectStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
