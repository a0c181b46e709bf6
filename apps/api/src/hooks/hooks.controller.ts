import { Controller, HttpCode, Inject, Param, ParseEnumPipe, Post, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { GitForge, WebhookResult } from '@stratum/contracts';
import { readRawBody } from './hooks-request.middleware';
import { HooksService } from './hooks.service';

@ApiTags('hooks')
@Controller('hooks')
export class HooksController {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly hooks: HooksService,
  ) {}

  @Post(':forge')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Webhook receiver of github, gitlab or gitea: a signed push of a project’s branch builds it',
    description:
      '202 {status: accepted, builds} or {status: ignored, reason}; 401 for a missing or wrong signature/token, a missing delivery id or a replayed delivery.',
  })
  async receive(
    @Param('forge', new ParseEnumPipe(GitForge)) forge: GitForge,
    @Req() req: Request,
  ): Promise<WebhookResult> {
    const body = await readRawBody(req, this.config.git.webhookMaxBodyBytes);
    return this.hooks.receive(forge, req.headers, body);
  }
}
