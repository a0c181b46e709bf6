import {
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  ParseUUIDPipe,
  Post,
  Query,
  Req,
  Res,
} from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Request, Response } from 'express';
import { BuildPage, BuildRecord, StratumError } from '@stratum/contracts';
import type { BuildStats } from '@stratum/jobs';
import type { CheckResult } from '@stratum/dockerfile';
import { readJsonBody } from '../common/json-body';
import { writeSse } from '../common/sse';
import { ZodPipe } from '../common/zod-query.pipe';
import {
  BuildOutputQuery,
  BuildOutputQuerySchema,
  BuildContextStored,
  BuildSecretsCreated,
  BuildStatsQuery,
  BuildStatsQuerySchema,
  BuildSubmitted,
  CheckDockerfileQuery,
  CheckDockerfileQuerySchema,
  ListBuildsQuery,
  ListBuildsQuerySchema,
  SubmitBuildQuery,
  SubmitBuildQuerySchema,
} from './builds.dto';
import { tryParseReference } from '@stratum/oci';
import { RepositoryAccess } from '../auth/repository-access';
import { BuildsService } from './builds.service';

const uuid = new ParseUUIDPipe({ version: '4' });

/** 32 secrets of 500 KiB as base64, and their JSON. */
const MAX_SECRETS_BODY_BYTES = 24 * 1024 * 1024;

@ApiTags('builds')
@Controller('api/v1/builds')
export class BuildsController {
  constructor(
    private readonly builds: BuildsService,
    private readonly access: RepositoryAccess,
  ) {}

  @Post()
  @HttpCode(202)
  @ApiOperation({
    summary: 'Submit a build: the body is the context as a tar (optionally gzip)',
    description:
      'Query: t (repeatable repo:tag), dockerfile, buildargs (JSON object), target, nocache, push, ' +
      'network (sandbox|none|default: the network of RUN steps that name none).',
  })
  @ApiConsumes('application/x-tar', 'application/gzip')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  async submit(
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
    @Query(new ZodPipe(SubmitBuildQuerySchema)) query: SubmitBuildQuery,
  ): Promise<BuildSubmitted> {
    this.access.assertTags(req, query.t);
    // An image named as a build context is read like a FROM the caller asked for: pull on it.
    for (const value of Object.values(query.buildcontexts ?? {})) {
      const ref = value.startsWith('docker-image://')
        ? tryParseReference(value.slice('docker-image://'.length))
        : null;
      if (ref !== null && ref.registry === null) {
        this.access.assert(req, ref.repository, 'pull');
      }
    }
    const length = req.headers['content-length'];
    const submitted = await this.builds.submit(req, length === undefined ? null : Number(length), query);
    await this.access.audit(req, 'build', { target: submitted.id, detail: query.t.join(' ') });
    res.setHeader('Location', submitted.url);
    return submitted;
  }

  @Post('check')
  @HttpCode(200)
  @ApiOperation({
    summary: "Run BuildKit's build checks over a Dockerfile without building (docker build --check)",
    description:
      'Body: the Dockerfile text. Query: buildargs (JSON object), target. Answers {warnings: [{rule, message, ' +
      'description, url, line, endLine}], config: {skip, skipAll, error, experimental, experimentalAll}, error?} — error is set when the ' +
      "file's `# check=error=true` (or the BUILDKIT_DOCKERFILE_CHECK build arg) turns the warnings into a failure. " +
      'A Dockerfile that does not parse is 400 with its line.',
  })
  @ApiConsumes('text/plain', 'application/octet-stream')
  @ApiBody({ schema: { type: 'string' } })
  async check(
    @Req() req: Request,
    @Query(new ZodPipe(CheckDockerfileQuerySchema)) query: CheckDockerfileQuery,
  ): Promise<CheckResult> {
    return this.builds.check(req as AsyncIterable<Buffer>, query);
  }

  @Post('contexts')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Store the tar of a named build context (--build-context name=DIR): answers {digest, size}',
    description:
      'Pass the digest in buildcontexts= of POST /api/v1/builds ({"name": "sha256:…"}). Checked as a build context (plain tar, MAX_CONTEXT_BYTES, MAX_CONTEXT_ENTRIES); no Dockerfile needed.',
  })
  @ApiConsumes('application/x-tar', 'application/gzip')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  putContext(@Req() req: Request): Promise<BuildContextStored> {
    const length = req.headers['content-length'];
    return this.builds.putContext(req, length === undefined ? null : Number(length));
  }

  @Post('secrets')
  @HttpCode(201)
  @ApiOperation({
    summary:
      'Hand over build secrets and ssh keys: {"secrets": {"<id>": "<base64>"}, "ssh": {"<id>": ["<base64 private key>"]}} (each secret at most 500 KiB)',
    description:
      'Answers {secretsId}; pass it as secrets= to POST /api/v1/builds. Kept AES-GCM encrypted under AUTH_SECRET (refused with 400 without it), deleted when that build ends. Content-Type application/json (up to 100 KB) or any other type (read here, up to 24 MiB).',
  })
  async secrets(@Req() req: Request): Promise<BuildSecretsCreated> {
    return this.builds.putSecrets(await readJsonBody(req, MAX_SECRETS_BODY_BYTES));
  }

  @Get()
  @ApiOperation({
    summary: 'List builds, newest first (offset, limit, state)',
    description: 'With API_AUTH on: only builds whose repositories the caller may pull.',
  })
  list(
    @Req() req: Request,
    @Query(new ZodPipe(ListBuildsQuerySchema)) query: ListBuildsQuery,
  ): Promise<BuildPage> {
    return this.builds.list(query, this.access.buildFilter(req) ?? undefined);
  }

  @Get('stats')
  @ApiOperation({
    summary: 'Build trends: per UTC day, finished builds, outcomes, p50/p95 run time and cache hit rate',
    description:
      'Query: days (1-90, default 14), project. With API_AUTH on: drawn from the builds whose repositories the caller may pull.',
  })
  stats(
    @Req() req: Request,
    @Query(new ZodPipe(BuildStatsQuerySchema)) query: BuildStatsQuery,
  ): Promise<BuildStats> {
    return this.builds.stats(query, this.access.buildFilter(req) ?? undefined);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A build: state, steps, timings, image digest, error' })
  async get(@Param('id', uuid) id: string, @Req() req: Request): Promise<BuildRecord> {
    return this.visibleBuild(req, id);
  }

  @Get(':id/logs')
  @ApiOperation({ summary: 'The build’s events as Server-Sent Events: replayed, then live until it ends' })
  @ApiProduces('text/event-stream')
  async logs(@Param('id', uuid) id: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    const lastEventId = req.header('last-event-id') ?? null;
    if (lastEventId !== null && !/^\d+-\d+$/.test(lastEventId)) {
      throw new StratumError(
        'BAD_REQUEST',
        `Last-Event-ID "${lastEventId}" is not an event id of this stream`,
      );
    }
    await this.visibleBuild(req, id);
    const abort = new AbortController();
    const events = await this.builds.events(id, lastEventId, abort.signal);
    await writeSse(req, res, async function* (signal) {
      signal.addEventListener('abort', () => abort.abort());
      for await (const { id: eventId, event } of events) {
        yield { id: eventId, event: event.type, data: event };
      }
    });
  }

  @Get(':id/output')
  @ApiOperation({
    summary:
      'What --output hands back: type=tar (the final filesystem) or type=oci (an OCI image layout tar)',
    description:
      'As docker buildx build --output: tar is the target stage’s filesystem (whiteouts applied; the CLI unpacks it for type=local), oci the image with its blobs as an OCI image layout. Only for a succeeded build.',
  })
  @ApiProduces('application/x-tar')
  async output(
    @Param('id', uuid) id: string,
    @Query(new ZodPipe(BuildOutputQuerySchema)) query: BuildOutputQuery,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    // The output is the build's image: pull on the repositories it was tagged into.
    await this.visibleBuild(req, id);
    const abort = new AbortController();
    const stream = Readable.from(await this.builds.output(id, query.type, abort.signal));
    res.status(200);
    res.setHeader('Content-Type', 'application/x-tar');
    res.setHeader('Content-Disposition', `attachment; filename="${id}-${query.type}.tar"`);
    req.on('close', () => abort.abort());
    await pipeline(stream, res).catch(() => {
      // The client went away or a blob failed mid-stream: the status is sent; cut the body.
      res.destroy();
    });
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Cancel a build: a queued build is dropped, a running step is killed' })
  async cancel(@Param('id', uuid) id: string, @Req() req: Request): Promise<BuildRecord> {
    await this.visibleBuild(req, id);
    return this.builds.cancel(id);
  }

  @Post(':id/retry')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Retry a finished build: a new build of the same context, Dockerfile, tags and arguments',
  })
  async retry(
    @Param('id', uuid) id: string,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ): Promise<BuildSubmitted> {
    this.access.assertTags(req, (await this.visibleBuild(req, id)).tags);
    const submitted = await this.builds.retry(id);
    res.setHeader('Location', submitted.url);
    return submitted;
  }

  /**
   * The build, when the caller may see it: under API_AUTH a build tagging into a repository the
   * caller may not pull is a 404 as a missing one is (ACCESS_RULES), never a 403 naming it.
   */
  private async visibleBuild(req: Request, id: string): Promise<BuildRecord> {
    const record = await this.builds.get(id);
    this.access.assertBuildVisible(req, record);
    return record;
  }
}
