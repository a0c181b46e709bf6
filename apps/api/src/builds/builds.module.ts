import { Module } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { tarBodyMiddleware } from '../common/tar-body.middleware';
import { BuildsController } from './builds.controller';
import { BuildsService } from './builds.service';

@Module({ controllers: [BuildsController], providers: [BuildsService] })
export class BuildsModule {
  constructor(adapterHost: HttpAdapterHost) {
    // Before app.init() installs the global body parsers: see tar-body.middleware.ts. It covers
    // the image import route too (one installation for both tar-body routes).
    adapterHost.httpAdapter?.use(tarBodyMiddleware);
  }
}
