import { Controller, Delete, Get, HttpCode, Param, Put, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request } from 'express';
import { readJsonBody } from '../common/json-body';
import { ZodPipe } from '../common/zod-query.pipe';
import { ProjectSecretsView } from './project-secret-store';
import { ProjectSecretsService } from './project-secrets.service';
import { ProjectNameSchema } from './projects.dto';

const projectName = new ZodPipe(ProjectNameSchema);
/** A 500 KiB secret as base64, and its JSON. */
const MAX_BODY_BYTES = 1024 * 1024;

@ApiTags('projects')
@Controller('api/v1/projects/:name')
export class ProjectSecretsController {
  constructor(private readonly secrets: ProjectSecretsService) {}

  @Get('secrets')
  @ApiOperation({
    summary: "A project's secret names and ssh deploy keys (public halves only; values are never shown)",
  })
  list(@Param('name', projectName) name: string): Promise<ProjectSecretsView> {
    return this.secrets.list(name);
  }

  @Put('secrets/:id')
  @HttpCode(204)
  @ApiOperation({
    summary:
      'Set a secret for the builds of this project\'s pushes, schedule and manual triggers: {"value": "<base64>"}',
    description:
      'RUN --mount=type=secret,id=<id> gets it. Sealed AES-GCM under AUTH_SECRET (400 without it); at most 500 KiB; builds of untrusted sources (pull requests from forks) do not get it.',
  })
  async setSecret(
    @Param('name', projectName) name: string,
    @Param('id') id: string,
    @Req() req: Request,
  ): Promise<void> {
    await this.secrets.setSecret(name, id, await readJsonBody(req, MAX_BODY_BYTES));
  }

  @Delete('secrets/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a secret of the project' })
  removeSecret(@Param('name', projectName) name: string, @Param('id') id: string): Promise<void> {
    return this.secrets.remove(name, 'secret', id);
  }

  @Put('ssh/:id')
  @ApiOperation({
    summary: 'Set an ssh deploy key: {"keys": ["<base64 private key file>"]}; answers its public key',
    description:
      'RUN --mount=type=ssh,id=<id> (id "default" when the mount names none) gets an agent serving it. Unencrypted ed25519, RSA or ECDSA keys.',
  })
  async setSsh(
    @Param('name', projectName) name: string,
    @Param('id') id: string,
    @Req() req: Request,
  ): Promise<{ id: string; publicKeys: string[] }> {
    return this.secrets.setSsh(name, id, await readJsonBody(req, MAX_BODY_BYTES));
  }

  @Delete('ssh/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove an ssh key of the project' })
  removeSsh(@Param('name', projectName) name: string, @Param('id') id: string): Promise<void> {
    return this.secrets.remove(name, 'ssh', id);
  }
}
