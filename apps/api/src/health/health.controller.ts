import { Controller, Get, HttpException, Inject } from '@nestjs/common';
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
  async health(): Promise<Health> {
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
    if (body.status !== 'ok') {
      throw new HttpException(body, 503);
    }
    return body;
  }
}
