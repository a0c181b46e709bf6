import { Controller, HttpCode, Param, ParseEnumPipe, Post, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Request, Response } from 'express';
import { GitForge, WebhookResult } from '@stratum/contracts';
import { closeAfterAnswer } from '../common/linger';
import { HooksService } from './hooks.service';

@ApiTags('hooks')
@Controller('hooks')
export class HooksController {
  constructor(private readonly hooks: HooksService) {}

  @Post(':forge')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Webhook receiver of github, gitlab or gitea: a signed push of a project’s branch builds it',
    description:
      '202 {status: accepted, builds} or {status: ignored, reason}; 401 for a missing or wrong signature/token (checked before the body is parsed), a missing delivery id or a replayed delivery (same delivery id, or same signed body); 413 past WEBHOOK_MAX_BODY_BYTES; 503 when too many bodies are being received at once.',
  })
  async receive(
    @Param('forge', new ParseEnumPipe(GitForge)) forge: GitForge,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<WebhookResult> {
    try {
      return await this.hooks.receive(forge, req.headers, req);
    } catch (err) {
      if (!req.complete) {
        // Refused before the body was read to its end: the connection closes after the answer
        // instead of Node draining (or the client sending) the rest of a body nobody wants.
        closeAfterAnswer(req, res);
      }
      throw err;
    }
  }
}
