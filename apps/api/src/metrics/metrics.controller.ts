import { Controller, Get, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { Response } from 'express';
import { MetricsService } from './metrics.service';

@ApiTags('metrics')
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get()
  @ApiOperation({ summary: 'Prometheus metrics: builds, steps and cache hits, queues, registry traffic' })
  @ApiProduces('text/plain')
  async scrape(@Res() res: Response): Promise<void> {
    const { contentType, body } = await this.metrics.scrape();
    // As prom-client names it (`text/plain; version=0.0.4; charset=utf-8`): Express's send()
    // would rewrite the header's parameters.
    res.status(200).setHeader('Content-Type', contentType);
    res.end(body);
  }
}
