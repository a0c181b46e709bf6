import { Controller, Get, Query, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { z } from 'zod';
import { ZodPipe } from '../common/zod-query.pipe';
import { AuditEntry, AuditLog, MAX_AUDIT_PAGE } from './audit-log';
import { RepositoryAccess } from './repository-access';

const AuditQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_AUDIT_PAGE).default(100),
  action: z.enum(['login', 'push', 'delete', 'tag', 'build', 'commit', 'import', 'robot']).optional(),
  subject: z.string().min(1).max(255).optional(),
  repository: z.string().max(255).optional(),
});
type AuditQuery = z.infer<typeof AuditQuerySchema>;

@ApiTags('audit')
@Controller('api/v1/audit')
export class AuditController {
  constructor(
    private readonly audit: AuditLog,
    private readonly access: RepositoryAccess,
  ) {}

  @Get()
  @ApiOperation({
    summary: 'The audit log, newest first: who logged in, pushed, deleted, tagged, built, from where',
    description: `Query: limit (1..${MAX_AUDIT_PAGE}, default 100), action, subject (who), repository. Needs an admin token.`,
  })
  list(@Req() req: Request, @Query(new ZodPipe(AuditQuerySchema)) query: AuditQuery): Promise<AuditEntry[]> {
    this.access.assertAdmin(req);
    return this.audit.list(query);
  }
}
