import { Module } from '@nestjs/common';
import { ProjectsModule } from '../projects/projects.module';
import { CommitStatusService } from './commit-status.service';
import { OutgoingWorker } from './outgoing.worker';

/** Calls out of the system from the `outgoing` queue: forge commit statuses. */
@Module({ imports: [ProjectsModule], providers: [CommitStatusService, OutgoingWorker] })
export class OutgoingModule {}
