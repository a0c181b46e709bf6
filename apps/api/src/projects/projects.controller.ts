import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Req } from '@nestjs/common';
import { Request } from 'express';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ProjectRefState, ProjectTrigger, ProjectView } from '@stratum/contracts';
import { RepositoryAccess } from '../auth/repository-access';
import { ZodPipe } from '../common/zod-query.pipe';
import {
  CreateProjectBody,
  CreateProjectBodySchema,
  ProjectNameSchema,
  TriggerProjectBody,
  TriggerProjectBodySchema,
  UpdateProjectBody,
  UpdateProjectBodySchema,
} from './projects.dto';
import { ProjectsService } from './projects.service';

const projectName = new ZodPipe(ProjectNameSchema);

@ApiTags('projects')
@Controller('api/v1/projects')
export class ProjectsController {
  constructor(
    private readonly projects: ProjectsService,
    private readonly access: RepositoryAccess,
  ) {}

  @Post()
  @ApiOperation({
    summary: 'Add a project: a git repository whose pushes (webhooks) or schedule build an image',
    description:
      'Body: name, repoUrl, forge (github|gitlab|gitea), branches, context, dockerfile, tags (templates with {repo} {branch} {sha} {shortsha}), repository, buildArgs, target, secret (webhook), credentials {username, token}, schedule (cron), scheduleBranch.',
  })
  create(
    @Req() req: Request,
    @Body(new ZodPipe(CreateProjectBodySchema)) body: CreateProjectBody,
  ): Promise<ProjectView> {
    // Its webhook and scheduled builds tag into these: push there for whoever sets them up.
    this.access.assertProjectTargets(req, { ...body, repository: body.repository ?? body.name });
    return this.projects.create(body);
  }

  @Get()
  @ApiOperation({ summary: 'Projects, by name' })
  list(): Promise<ProjectView[]> {
    return this.projects.list();
  }

  @Get(':name')
  @ApiOperation({ summary: 'A project (secrets shown only as hasSecret / hasCredentials)' })
  get(@Param('name', projectName) name: string): Promise<ProjectView> {
    return this.projects.get(name);
  }

  @Get(':name/refs')
  @ApiOperation({
    summary: 'The branches, tags and pull requests the project built, each with its latest build',
  })
  refs(@Param('name', projectName) name: string, @Req() req: Request): Promise<ProjectRefState[]> {
    return this.projects.refs(name, this.access.buildFilter(req) ?? undefined);
  }

  @Put(':name')
  @ApiOperation({ summary: 'Change a project: the fields given replace the stored ones' })
  async update(
    @Req() req: Request,
    @Param('name', projectName) name: string,
    @Body(new ZodPipe(UpdateProjectBodySchema)) body: UpdateProjectBody,
  ): Promise<ProjectView> {
    const current = await this.projects.get(name);
    const defined = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
    this.access.assertProjectTargets(req, { ...current, ...defined });
    return this.projects.update(name, body);
  }

  @Delete(':name')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a project (its images stay)' })
  delete(@Param('name', projectName) name: string): Promise<void> {
    return this.projects.delete(name);
  }

  @Post(':name/builds')
  @HttpCode(202)
  @ApiOperation({ summary: 'Build a branch head (or a commit) of the project now. Body: branch, sha' })
  trigger(
    @Param('name', projectName) name: string,
    @Body(new ZodPipe(TriggerProjectBodySchema)) body: TriggerProjectBody,
  ): Promise<ProjectTrigger> {
    return this.projects.trigger(name, body);
  }
}
