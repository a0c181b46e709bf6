import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { QueuesOverview } from './queues.dto';
import { QueuesService } from './queues.service';

@ApiTags('queues')
@Controller('api/v1/queues')
export class QueuesController {
  constructor(private readonly queues: QueuesService) {}

  @Get()
  @ApiOperation({
    summary: 'Queue health: jobs by state per queue (shared and per-worker) and the workers online',
  })
  overview(): Promise<QueuesOverview> {
    return this.queues.overview();
  }
}
