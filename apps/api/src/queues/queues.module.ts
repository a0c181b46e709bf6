import { Module } from '@nestjs/common';
import { QueuesController } from './queues.controller';
import { QueuesService } from './queues.service';

/** `GET /api/v1/queues` over the producers' queues of JobsModule (global). */
@Module({ controllers: [QueuesController], providers: [QueuesService], exports: [QueuesService] })
export class QueuesModule {}
