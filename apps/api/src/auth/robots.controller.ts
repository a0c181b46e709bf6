import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { z } from 'zod';
import { StratumError } from '@stratum/contracts';
import { ZodPipe } from '../common/zod-query.pipe';
import { RepositoryAccess } from './repository-access';
import { CreatedRobot, MAX_ROBOT_SECONDS, RobotAccount, RobotStore } from './robot-store';

/** Body of `POST /api/v1/robots`. */
const CreateRobotSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'name: a-z, 0-9, _ and -, at most 63'),
  expiresInSeconds: z.number().int().min(1).max(MAX_ROBOT_SECONDS),
  rules: z
    .array(
      z.object({
        pattern: z.string().regex(/^[a-z0-9*][a-z0-9._/*-]*$/, 'pattern: a repository name with * wildcards'),
        actions: z.array(z.enum(['pull', 'push', 'delete'])).min(1),
      }),
    )
    .min(1)
    .max(64),
});
type CreateRobot = z.infer<typeof CreateRobotSchema>;

@ApiTags('robots')
@Controller('api/v1/robots')
export class RobotsController {
  constructor(
    private readonly robots: RobotStore,
    private readonly access: RepositoryAccess,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({
    summary:
      'Create a robot account: {name, expiresInSeconds, rules: [{pattern, actions}]}; its token is shown once',
  })
  async create(
    @Req() req: Request,
    @Body(new ZodPipe(CreateRobotSchema)) body: CreateRobot,
  ): Promise<CreatedRobot> {
    const createdBy = this.access.assertAdmin(req);
    const made = await this.robots.create({ ...body, createdBy });
    await this.access.audit(req, 'robot', { target: body.name, detail: 'created' });
    return made;
  }

  @Get()
  @ApiOperation({ summary: 'Robot accounts (never their tokens)' })
  list(@Req() req: Request): Promise<RobotAccount[]> {
    this.access.assertAdmin(req);
    return this.robots.list();
  }

  @Delete(':name')
  @ApiOperation({ summary: 'Revoke a robot account: its token stops working at once' })
  async revoke(@Req() req: Request, @Param('name') name: string): Promise<{ revoked: string }> {
    this.access.assertAdmin(req);
    if (!(await this.robots.revoke(name))) {
      throw new StratumError('ROBOT_UNKNOWN', `no robot account ${JSON.stringify(name)}`);
    }
    await this.access.audit(req, 'robot', { target: name, detail: 'revoked' });
    return { revoked: name };
  }
}
