import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { ApiTags } from '@nestjs/swagger';
import { Redis } from 'ioredis';
import { REDIS } from '@stratum/jobs';
import { BLOB_STORE, BlobStore } from '@stratum/storage';

export interface Health {
  readonly status: 'ok' | 'degraded';
  /** `ok`, or the error. */
  readonly redis: string;
  /** `ok`, or the error. */
  readonly storage: string;
}

@ApiTags('health')
@Controller()
export class HealthController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
  ) {}

  /** 200 when Redis answers and the blob store can be read; 503 naming what failed otherwise. */
  @Get('healthz')
  async health(@Res({ passthrough: true }) res: Response): Promise<Health> {
    const [redis, storage] = await Promise.all([
      this.redis.ping().then(
        () => 'ok',
        (e: Error) => e.message,
      ),
      this.blobs.has(`sha256:${'0'.repeat(64)}`).then(
        () => 'ok',
        (e: Error) => e.message,
      ),
    ]);
    const body: Health = { status: redis === 'ok' && storage === 'ok' ? 'ok' : 'degraded', redis, storage };
    // The body names what failed (the dashboard's outage banner reads it), so it is answered as
    // is rather than thrown: the error filter would keep only a message.
    res.status(body.status === 'ok' ? 200 : 503);
    return body;
  }
}
