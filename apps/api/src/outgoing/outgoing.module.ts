import { Module } from '@nestjs/common';
import { ProjectsModule } from '../projects/projects.module';
import { CommitStatusService } from './commit-status.service';
import { NotificationDeliveryService } from './notification-delivery.service';
import { NotificationsController } from './notifications.controller';
import { OutboxRelay } from './outbox-relay';
import { OutgoingWorker } from './outgoing.worker';

/**
 * Calls out of the system: the outbox stream relayed into the `outgoing` queue, and that queue's
 * processor (forge commit statuses, notifications).
 */
@Module({
  imports: [ProjectsModule],
  controllers: [NotificationsController],
  providers: [CommitStatusService, NotificationDeliveryService, OutgoingWorker, OutboxRelay],
})
export class OutgoingModule {}
