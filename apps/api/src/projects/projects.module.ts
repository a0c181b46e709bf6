import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { REDIS } from '@stratum/jobs';
import { ProjectBuilder } from './project-builder';
import { ProjectStore } from './project-store';
import { ProjectsController } from './projects.controller';
import { ProjectsService } from './projects.service';

/** `/api/v1/projects` and what turns a project's commit into a build (used by hooks and maintenance). */
@Module({
  controllers: [ProjectsController],
  providers: [
    { provide: ProjectStore, inject: [REDIS], useFactory: (redis: Redis) => new ProjectStore(redis) },
    ProjectBuilder,
    ProjectsService,
  ],
  exports: [ProjectStore, ProjectBuilder],
})
export class ProjectsModule implements OnApplicationShutdown {
  constructor(@Inject(ProjectStore) private readonly store: ProjectStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
