import { Module } from '@nestjs/common';
import { DashboardController } from './dashboard.controller';

/** The web dashboard at `/` and `/dashboard` (static page over the REST API). */
@Module({ controllers: [DashboardController] })
export class DashboardModule {}
