import { Module } from '@nestjs/common';
import { ProjectsModule } from '../projects/projects.module';
import { BadgesController } from './badges.controller';

/** `GET /badges/<project>/<branch>.svg`. */
@Module({ imports: [ProjectsModule], controllers: [BadgesController] })
export class BadgesModule {}
