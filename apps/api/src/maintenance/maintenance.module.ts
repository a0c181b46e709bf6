import { Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { ProjectsModule } from '../projects/projects.module';
import { MaintenanceController } from './maintenance.controller';
import { MaintenanceScheduler } from './maintenance.scheduler';
import { MaintenanceService } from './maintenance.service';

/** `/api/v1/maintenance` and the scheduled jobs (garbage collection, retention, project rebuilds). */
@Module({
  imports: [ScheduleModule.forRoot(), ProjectsModule],
  controllers: [MaintenanceController],
  providers: [MaintenanceService, MaintenanceScheduler],
})
export class MaintenanceModule {}
