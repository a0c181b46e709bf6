import { Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { MaintenanceRun } from '@stratum/contracts';
import type { QuotaUsage } from '@stratum/storage';
import { ZodPipe } from '../common/zod-query.pipe';
import { MaintenanceService } from './maintenance.service';

const RunsQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) });

@ApiTags('maintenance')
@Controller('api/v1/maintenance')
export class MaintenanceController {
  constructor(private readonly maintenance: MaintenanceService) {}

  @Get('runs')
  @ApiOperation({ summary: 'Maintenance runs, newest first, with what each freed' })
  runs(
    @Query(new ZodPipe(RunsQuerySchema)) query: z.infer<typeof RunsQuerySchema>,
  ): Promise<MaintenanceRun[]> {
    return this.maintenance.runs(query.limit);
  }

  @Get('quotas')
  @ApiOperation({
    summary:
      'REPOSITORY_QUOTAS: bytes of unique blobs held by the repositories of each pattern, and its limit',
  })
  quotas(): Promise<QuotaUsage[]> {
    return this.maintenance.quotaUsage();
  }

  @Post('gc')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Run maintenance now: retention, expired uploads, idle containers, blob garbage collection',
    description: '409 MAINTENANCE_BUSY when another replica is running it.',
  })
  gc(): Promise<MaintenanceRun> {
    return this.maintenance.gc('manual');
  }

  @Post('fsck')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Re-hash every stored blob now; mismatches are quarantined (counts in stats)',
    description: '409 MAINTENANCE_BUSY when another replica is running it.',
  })
  fsck(): Promise<MaintenanceRun> {
    return this.maintenance.fsck('manual');
  }
}
