import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Req } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { ImageHistoryEntry, ImageSummary, RemovedImage } from '@stratum/images';
import { parseReference } from '@stratum/oci';
import { ZodPipe } from '../common/zod-query.pipe';
import {
  ImageDetail,
  ImageRefParamSchema,
  ImportedImage,
  ImportImageQuery,
  ImportImageQuerySchema,
  RemoveImageQuery,
  RemoveImageQuerySchema,
  TagImageBody,
  TagImageBodySchema,
  TaggedImage,
} from './images.dto';
import { RepositoryAccess } from '../auth/repository-access';
import { ImagesApiService } from './images.service';

const ref = new ZodPipe(ImageRefParamSchema);

@ApiTags('images')
@Controller('api/v1/images')
export class ImagesController {
  constructor(
    private readonly images: ImagesApiService,
    private readonly access: RepositoryAccess,
  ) {}

  @Post('import')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Import a root filesystem tar (plain or gzip) as a one-layer image, like `docker import`',
    description:
      'Query: repository (required), tag (default latest), message (history comment), ' +
      'change (repeatable: a Dockerfile instruction applied to the config, as `docker import --change`).',
  })
  @ApiConsumes('application/x-tar', 'application/gzip', 'application/octet-stream')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 201, description: 'Imported: manifest and config digests, the layer' })
  @ApiResponse({
    status: 400,
    description: 'BAD_REQUEST (bad name, empty body) or LAYER_INVALID (not a tar)',
  })
  async import(
    @Req() req: Request,
    @Query(new ZodPipe(ImportImageQuerySchema)) query: ImportImageQuery,
  ): Promise<ImportedImage> {
    this.access.assert(req, query.repository, 'push');
    const imported = await this.images.import(req, query);
    await this.access.audit(req, 'import', { repository: query.repository, target: query.tag });
    return imported;
  }

  @Get()
  @ApiOperation({ summary: 'Every tag of every repository, with manifest digest, size and creation time' })
  async list(@Req() req: Request): Promise<ImageSummary[]> {
    // Only the repositories the caller may pull (ACCESS_RULES, REPOSITORY_ACCESS).
    return (await this.images.list()).filter((i) => this.access.mayPull(req, i.repository));
  }

  // `*ref`: a reference holds slashes (team/app:1), sent as they are or URL-encoded; the routes
  // with a suffix come before the bare one, which would take the suffix as part of the name.
  @Get('*ref/history')
  @ApiOperation({
    summary:
      "An image's history, newest first, like `docker history`: created, created by, layer size, comment",
    description:
      "size: bytes of file content in the step's layer (as Docker counts it); id: the config digest on the newest row.",
  })
  @ApiParam({
    name: 'ref',
    description: 'repo, repo:tag or repo@sha256:… (slashes as they are, or URL-encoded)',
  })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  history(@Req() req: Request, @Param('ref', ref) reference: string): Promise<ImageHistoryEntry[]> {
    this.access.assert(req, parseReference(reference).repository, 'pull');
    return this.images.history(reference);
  }

  @Get('*ref')
  @ApiOperation({ summary: 'An image: layers with sizes, history, config' })
  @ApiParam({
    name: 'ref',
    description: 'repo, repo:tag or repo@sha256:… (slashes as they are, or URL-encoded)',
  })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  get(@Req() req: Request, @Param('ref', ref) reference: string): Promise<ImageDetail> {
    this.access.assert(req, parseReference(reference).repository, 'pull');
    return this.images.get(reference);
  }

  @Delete('*ref')
  @ApiOperation({
    summary: 'Remove a tag or an image, like `docker rmi`',
    description:
      '`repo:tag` removes the tag (and the manifest from the repository when no other tag names it); ' +
      '`repo@sha256:…` removes the manifest, 409 IMAGE_CONFLICT while tags name it unless force=true.',
  })
  @ApiParam({ name: 'ref', description: 'repo:tag or repo@sha256:… (slashes as they are, or URL-encoded)' })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  @ApiResponse({ status: 409, description: 'IMAGE_CONFLICT' })
  async remove(
    @Req() req: Request,
    @Param('ref', ref) reference: string,
    @Query(new ZodPipe(RemoveImageQuerySchema)) query: RemoveImageQuery,
  ): Promise<RemovedImage> {
    const repository = parseReference(reference).repository;
    this.access.assert(req, repository, 'delete');
    const removed = await this.images.remove(reference, query.force);
    await this.access.audit(req, 'delete', { repository, target: reference });
    return removed;
  }

  @Post('*ref/tag')
  @HttpCode(201)
  @ApiOperation({ summary: 'Point repository:tag at the image `ref` names (body: {repository, tag})' })
  @ApiParam({
    name: 'ref',
    description: 'repo, repo:tag or repo@sha256:… (slashes as they are, or URL-encoded)',
  })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  async tag(
    @Req() req: Request,
    @Param('ref', ref) reference: string,
    @Body(new ZodPipe(TagImageBodySchema)) body: TagImageBody,
  ): Promise<TaggedImage> {
    this.access.assert(req, parseReference(reference).repository, 'pull');
    this.access.assert(req, body.repository, 'push');
    const tagged = await this.images.tag(reference, body);
    await this.access.audit(req, 'tag', { repository: body.repository, target: body.tag, detail: reference });
    return tagged;
  }
}
