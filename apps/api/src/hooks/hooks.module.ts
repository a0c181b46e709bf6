import { Module } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ProjectsModule } from '../projects/projects.module';
import { hooksRequestMiddleware } from './hooks-request.middleware';
import { HooksController } from './hooks.controller';
import { HooksService } from './hooks.service';

/** `POST /hooks/github|gitlab|gitea`: git forge webhooks that build projects. */
@Module({
  imports: [ProjectsModule],
  controllers: [HooksController],
  providers: [HooksService],
})
export class HooksModule {
  constructor(adapterHost: HttpAdapterHost) {
    // Runs while Nest builds the module graph, before app.init() installs the global body
    // parsers, so the raw body survives (see hooks-request.middleware.ts).
    adapterHost.httpAdapter?.use(hooksRequestMiddleware);
  }
}
