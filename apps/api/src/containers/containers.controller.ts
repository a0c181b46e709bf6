import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Request, Response } from 'express';
import { ContainerChanges, ContainerRecord } from '@stratum/contracts';
import { ZodPipe } from '../common/zod-query.pipe';
import {
  CommitAccepted,
  CommitContainerBody,
  CommitContainerBodySchema,
  ContainerCreated,
  ContainerIdParamSchema,
  CreateContainerBody,
  CreateContainerBodySchema,
} from './containers.dto';
import { RepositoryAccess } from '../auth/repository-access';
import { ContainersService } from './containers.service';

const containerId = new ZodPipe(ContainerIdParamSchema);

@ApiTags('containers')
@Controller('api/v1/containers')
export class ContainersController {
  constructor(
    private readonly containers: ContainersService,
    private readonly access: RepositoryAccess,
  ) {}

  @Post()
  @HttpCode(202)
  @ApiOperation({
    summary: 'Run a command in a new container of an image, like `docker run` (detached)',
    description:
      'Body: {image, cmd: string[], env?: ["K=v"] | {K: v}, workdir?, user?, network?: "sandbox"|"none"|"host"}. ' +
      "The image's Entrypoint is kept and cmd replaces its Cmd. Poll the container until state is `exited`.",
  })
  @ApiResponse({ status: 202, description: 'Created and queued: id and URL' })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  async create(
    @Body(new ZodPipe(CreateContainerBodySchema)) body: CreateContainerBody,
    @Res({ passthrough: true }) res: Response,
  ): Promise<ContainerCreated> {
    const created = await this.containers.create(body);
    res.setHeader('Location', created.url);
    return created;
  }

  @Get()
  @ApiOperation({ summary: 'Containers that are not removed, newest first' })
  list(): Promise<ContainerRecord[]> {
    return this.containers.list();
  }

  @Get(':id')
  @ApiOperation({
    summary: 'A container: state (created|running|exited|removed), exit code, logs (bounded), commits',
    description:
      'Each commit (POST …/commit) appears in `commits[]` with its state and, once done, imageDigest.',
  })
  @ApiParam({ name: 'id', description: '32 hex digits' })
  @ApiResponse({ status: 404, description: 'CONTAINER_UNKNOWN' })
  get(@Param('id', containerId) id: string): Promise<ContainerRecord> {
    return this.containers.get(id);
  }

  @Get(':id/changes')
  @ApiOperation({
    summary: "The container's filesystem changes, like `docker diff`: [{kind: A|C|D, path}]",
    description: 'Read by the worker when the command exits; `changes` is null until then.',
  })
  @ApiParam({ name: 'id', description: '32 hex digits' })
  @ApiResponse({ status: 404, description: 'CONTAINER_UNKNOWN' })
  changes(@Param('id', containerId) id: string): Promise<ContainerChanges> {
    return this.containers.changes(id);
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Remove a container and its changes, like `docker rm`; 409 while it runs' })
  @ApiResponse({ status: 409, description: 'CONTAINER_STATE (running or being committed)' })
  remove(@Param('id', containerId) id: string): Promise<ContainerRecord> {
    return this.containers.remove(id);
  }

  @Post(':id/commit')
  @HttpCode(202)
  @ApiOperation({
    summary: "Commit an exited container's changes as a new image, like `docker commit`",
    description:
      'Body: {repository, tag?, message?, author?, changes?: ["CMD [\\"sh\\"]", "ENV A=b", …]}. ' +
      'The result is on GET /api/v1/containers/:id in commits[] (state queued|running|succeeded|failed, imageDigest).',
  })
  @ApiResponse({ status: 202, description: 'Queued: commitId and the container URL to follow it on' })
  @ApiResponse({ status: 404, description: 'CONTAINER_UNKNOWN' })
  @ApiResponse({ status: 409, description: 'CONTAINER_STATE (not exited)' })
  async commit(
    @Param('id', containerId) id: string,
    @Body(new ZodPipe(CommitContainerBodySchema)) body: CommitContainerBody,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<CommitAccepted> {
    this.access.assert(req, body.repository, 'push');
    const accepted = await this.containers.commit(id, body);
    await this.access.audit(req, 'commit', { repository: body.repository, target: body.tag, detail: id });
    res.setHeader('Location', accepted.url);
    return accepted;
  }
}
