import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ZodPipe } from '../common/zod-query.pipe';
import { PushImageBodySchema, PushView } from './push.dto';
import type { PushImageBody } from './push.dto';
import { PushService } from './push.service';

/** Push an image of ours to repositories here or in other registries; follow the push. */
@ApiTags('images')
@Controller('api/v1')
export class PushController {
  constructor(private readonly pushes: PushService) {}

  @Post('images/:ref/push')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Push an image to `repo:tag` targets here or `host[:port]/repo:tag` in another registry',
    description:
      'Body: {targets: string[], credentials?: {username, password}} (credentials for the other registries).',
  })
  @ApiParam({ name: 'ref', description: 'URL-encoded repo, repo:tag or repo@sha256:…' })
  @ApiResponse({ status: 202, description: 'Queued: the push record, with its url' })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  push(
    @Param('ref') ref: string,
    @Body(new ZodPipe(PushImageBodySchema)) body: PushImageBody,
  ): Promise<PushView> {
    return this.pushes.pushImage(ref, body.targets, body.credentials);
  }

  @Get('pushes/:id')
  @ApiOperation({ summary: 'A push: state, attempts, per target state, blob counts and error' })
  @ApiResponse({ status: 404, description: 'PUSH_UNKNOWN' })
  get(@Param('id') id: string): Promise<PushView> {
    return this.pushes.get(id);
  }

  @Delete('pushes/:id')
  @HttpCode(202)
  @ApiOperation({
    summary:
      'Cancel a queued or running push (it ends failed, "push cancelled"); a finished one is left as is',
  })
  @ApiResponse({ status: 404, description: 'PUSH_UNKNOWN' })
  cancel(@Param('id') id: string): Promise<PushView> {
    return this.pushes.cancel(id);
  }
}
