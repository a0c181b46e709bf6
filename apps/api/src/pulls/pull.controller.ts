import { Body, Controller, Post, Res } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Response } from 'express';
import { PullEvent } from '@stratum/registry';
import { toErrorBody } from '../common/error.filter';
import { ZodPipe } from '../common/zod-query.pipe';
import { PullImageBody, PullImageBodySchema } from './pull.dto';
import { PullService } from './pull.service';

@ApiTags('images')
@Controller('api/v1/images')
export class PullController {
  constructor(private readonly pulls: PullService) {}

  /**
   * Answers once the source's manifest is read (errors before that are plain JSON errors), then
   * streams progress as JSON lines, as Docker's `POST /images/create` does. A client that hangs
   * up cancels the pull; a failure after the first line is a last `{"type":"error"}` line.
   */
  @Post('pull')
  @ApiOperation({
    summary: 'Pull an image from another registry into this one, like `docker pull`',
    description:
      'Body: {source: "[host[:port]/]repo[:tag|@digest]", repository?, tag?, credentials?}. Answer: ' +
      'application/x-ndjson lines {type: resolved|blob|done|error}; blob lines carry digest, size, current, status.',
  })
  @ApiResponse({ status: 200, description: 'Progress lines; the last is `done` or `error`' })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN (the other registry has no such image)' })
  @ApiResponse({ status: 502, description: 'PULL_FAILED (the other registry failed or refused)' })
  async pull(
    @Body(new ZodPipe(PullImageBodySchema)) body: PullImageBody,
    @Res() res: Response,
  ): Promise<void> {
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) {
        abort.abort(new Error('the client went away'));
      }
    });
    const plan = await this.pulls.resolve(body, abort.signal);
    res.status(200).setHeader('content-type', 'application/x-ndjson');
    res.flushHeaders();
    const line = (e: PullEvent): void => void res.write(`${JSON.stringify(e)}\n`);
    try {
      await this.pulls.fetch(plan, line, abort.signal);
    } catch (err) {
      if (!abort.signal.aborted) {
        const { code, message } = toErrorBody(err);
        line({ type: 'error', code, message });
      }
    }
    res.end();
  }
}
