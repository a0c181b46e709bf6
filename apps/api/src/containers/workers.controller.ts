import { Controller, Delete, Get, Param } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ZodPipe } from '../common/zod-query.pipe';
import { WorkerIdParamSchema, WorkerRemoved, WorkerView } from './workers.dto';
import { WorkersService } from './workers.service';

@ApiTags('workers')
@Controller('api/v1/workers')
export class WorkersController {
  constructor(private readonly workers: WorkersService) {}

  @Get()
  @ApiOperation({
    summary: 'Workers, live and gone: since when a gone one is gone, and the containers and jobs it left',
  })
  list(): Promise<WorkerView[]> {
    return this.workers.list();
  }

  @Delete(':id')
  @ApiOperation({
    summary: 'Forget a gone worker: its container records are removed and its queue deleted with its jobs',
  })
  @ApiParam({ name: 'id', description: 'WORKER_ID' })
  @ApiResponse({ status: 404, description: 'WORKER_UNKNOWN' })
  @ApiResponse({ status: 409, description: 'WORKER_LIVE: the worker is running' })
  remove(@Param('id', new ZodPipe(WorkerIdParamSchema)) id: string): Promise<WorkerRemoved> {
    return this.workers.remove(id);
  }
}
