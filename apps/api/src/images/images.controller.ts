import { Body, Controller, Get, HttpCode, Param, Post, Query, Req } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { ImageSummary } from '@stratum/images';
import { ZodPipe } from '../common/zod-query.pipe';
import {
  ImageDetail,
  ImageRefParamSchema,
  ImportedImage,
  ImportImageQuery,
  ImportImageQuerySchema,
  TagImageBody,
  TagImageBodySchema,
  TaggedImage,
} from './images.dto';
import { ImagesApiService } from './images.service';

const ref = new ZodPipe(ImageRefParamSchema);

@ApiTags('images')
@Controller('api/v1/images')
export class ImagesController {
  constructor(private readonly images: ImagesApiService) {}

  @Post('import')
  @HttpCode(201)
  @ApiOperation({
    summary: 'Import a root filesystem tar (plain or gzip) as a one-layer image, like `docker import`',
    description: 'Query: repository (required), tag (default latest), message (history comment).',
  })
  @ApiConsumes('application/x-tar', 'application/gzip', 'application/octet-stream')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  @ApiResponse({ status: 201, description: 'Imported: manifest and config digests, the layer' })
  @ApiResponse({
    status: 400,
    description: 'BAD_REQUEST (bad name, empty body) or LAYER_INVALID (not a tar)',
  })
  import(
    @Req() req: Request,
    @Query(new ZodPipe(ImportImageQuerySchema)) query: ImportImageQuery,
  ): Promise<ImportedImage> {
    return this.images.import(req, query);
  }

  @Get()
  @ApiOperation({ summary: 'Every tag of every repository, with manifest digest, size and creation time' })
  list(): Promise<ImageSummary[]> {
    return this.images.list();
  }

  @Get(':ref')
  @ApiOperation({ summary: 'An image: layers with sizes, history, config' })
  @ApiParam({ name: 'ref', description: 'URL-encoded repo, repo:tag or repo@sha256:…' })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  get(@Param('ref', ref) reference: string): Promise<ImageDetail> {
    return this.images.get(reference);
  }

  @Post(':ref/tag')
  @HttpCode(201)
  @ApiOperation({ summary: 'Point repository:tag at the image `ref` names (body: {repository, tag})' })
  @ApiParam({ name: 'ref', description: 'URL-encoded repo, repo:tag or repo@sha256:…' })
  @ApiResponse({ status: 404, description: 'IMAGE_UNKNOWN' })
  tag(
    @Param('ref', ref) reference: string,
    @Body(new ZodPipe(TagImageBodySchema)) body: TagImageBody,
  ): Promise<TaggedImage> {
    return this.images.tag(reference, body);
  }
}
