import { Inject, Injectable, Logger } from '@nestjs/common';
import { Job, UnrecoverableError } from 'bullmq';
import { JobName, PushJobData, PushJobResult } from '@stratum/contracts';
import { ImagePusher, PushFailedError } from '@stratum/registry';
import { JobHandler } from '../job-handler';

/**
 * `push` jobs: copies an image of ours to the job's targets (ImagePusher: ours by linking, tag
 * last; another registry's by uploading what it lacks, manifest last). Transient failures
 * (network, 5xx, 429) fail the attempt so BullMQ retries it with backoff, resuming after the
 * targets already done; anything else (unknown image, refused credentials, bad target) is final.
 */
@Injectable()
export class PushProcessor implements JobHandler<typeof JobName.Push> {
  readonly name = JobName.Push;
  private readonly logger = new Logger('PushProcessor');

  constructor(@Inject(ImagePusher) private readonly pusher: ImagePusher) {}

  async handle(
    job: Job<PushJobData, PushJobResult, typeof JobName.Push>,
    signal: AbortSignal,
  ): Promise<PushJobResult> {
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    try {
      const pushed = await this.pusher.run(job.data, { lastAttempt, signal });
      this.logger.log(`push ${job.data.pushId}: ${job.data.manifestDigest} -> ${pushed.join(', ')}`);
      return { pushId: job.data.pushId, pushed };
    } catch (err) {
      if (err instanceof PushFailedError && !err.transient) {
        throw new UnrecoverableError(err.message);
      }
      throw err;
    }
  }
}
