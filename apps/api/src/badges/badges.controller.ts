import { Controller, Get, Header, Param, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { Response } from 'express';
import { StratumError } from '@stratum/contracts';
import { BuildRecordStore } from '@stratum/jobs';
import { ZodPipe } from '../common/zod-query.pipe';
import { ProjectNameSchema } from '../projects/projects.dto';
import { ProjectStore } from '../projects/project-store';
import { buildBadgeSvg } from './badge-svg';
import { BranchSvgSchema } from './badges.dto';

/**
 * `GET /badges/<project>/<branch>.svg`: the state of the branch's latest build as a
 * shields-style badge, for a README. Open like the dashboard's files (outside `/api/`): a badge
 * is embedded where no token can be sent. Not cached by browsers or proxies (GitHub's camo
 * honours `no-cache`), so it follows the builds.
 */
@ApiTags('projects')
@Controller('badges')
export class BadgesController {
  constructor(
    private readonly projects: ProjectStore,
    private readonly builds: BuildRecordStore,
  ) {}

  @Get(':project/*branch')
  @Header('Cache-Control', 'no-cache, max-age=0')
  @ApiOperation({ summary: 'Shields-style SVG badge of the latest build of a project branch' })
  @ApiProduces('image/svg+xml')
  async badge(
    @Param('project', new ZodPipe(ProjectNameSchema)) project: string,
    @Param('branch', new ZodPipe(BranchSvgSchema)) branch: string,
    @Res() res: Response,
  ): Promise<void> {
    if ((await this.projects.get(project)) === null) {
      throw new StratumError('PROJECT_UNKNOWN', `no project named "${project}"`);
    }
    const latest = await this.builds.latestOf(project, `refs/heads/${branch}`);
    res.type('image/svg+xml; charset=utf-8').send(buildBadgeSvg(latest?.state ?? null));
  }
}
