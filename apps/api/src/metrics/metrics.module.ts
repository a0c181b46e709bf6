import { Module } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { QueuesModule } from '../queues/queues.module';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';
import { registryTrafficMiddleware } from './registry-traffic.middleware';

/** `GET /metrics` (Prometheus), and the middleware counting registry blob bytes. */
@Module({ imports: [QueuesModule], controllers: [MetricsController], providers: [MetricsService] })
export class MetricsModule {
  constructor(adapterHost: HttpAdapterHost, metrics: MetricsService) {
    // As RegistryModule does: installed while the module graph is built, ahead of the routes.
    // Without an HTTP adapter (an application context) there is nothing to count.
    adapterHost.httpAdapter?.use(registryTrafficMiddleware(metrics));
  }
}
