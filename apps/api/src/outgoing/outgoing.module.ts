import { Module } from '@nestjs/common';
import { ProjectsModule } from '../projects/projects.module';
import { CommitStatusService } from './commit-status.service';
import { NotificationDeliveryService } from './notification-delivery.service';
import { NotificationsController } from './notifications.controller';
import { OutgoingWorker } from './outgoing.worker';

/** Calls out of the system from the `outgoing` queue: forge commit statuses. */
@Module({
  imports: [ProjectsModule],
  controllers: [NotificationsController],
  providers: [CommitStatusService, NotificationDeliveryService, OutgoingWorker],
})
export class OutgoingModule {}
