import { sendStream } from '@stratum/storage';
import { All, Controller, Inject, Optional, Req, Res, UseFilters, UseGuards } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Request, Response } from 'express';
import {
  Page,
  parsePageQuery,
  PullThroughCache,
  RegistryError,
  RegistryRoute,
  RegistryService,
  uploadRangeHeader,
} from '@stratum/registry';
import { AuditLog } from '../auth/audit-log';
import { parseBasic } from '../auth/credential-verifier';
import { RegistryTokenService } from '../auth/registry-token.service';
import { RegistryAccessGuard, registryGrantOf, registryRouteOf } from './registry-access.guard';
import { RegistryErrorFilter } from './registry-error.filter';
import { registryContentType } from './registry-request.middleware';

type Route<K extends RegistryRoute['kind']> = Extract<RegistryRoute, { kind: K }>;

/**
 * The OCI distribution API under /v2/.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 *
 * One wildcard route instead of one route per endpoint: repository names have any number of
 * slashes and may contain `manifests` or `blobs` as components, which path patterns cannot
 * express, so `parseRegistryPath` matches the endpoint suffix from the end of the path. Each
 * handler below is one RegistryService call plus the headers the spec prescribes. Bodies are
 * streams (registry-request.middleware.ts keeps the body parsers off them).
 */
@ApiExcludeController()
@Controller('v2')
@UseFilters(RegistryErrorFilter)
@UseGuards(RegistryAccessGuard)
export class RegistryController {
  constructor(
    @Inject(RegistryService) private readonly registry: RegistryService,
    @Optional() @Inject(RegistryTokenService) private readonly tokens: RegistryTokenService | null = null,
    @Optional() @Inject(PullThroughCache) private readonly mirror: PullThroughCache | null = null,
    @Optional() @Inject(AuditLog) private readonly audit: AuditLog | null = null,
  ) {}

  @All()
  base(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.dispatch(req, res);
  }

  @All('*path')
  endpoint(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.dispatch(req, res);
  }

  private async dispatch(req: Request, res: Response): Promise<void> {
    const route = registryRouteOf(req);
    const method = req.method.toUpperCase();
    if (route === null) {
      throw new RegistryError('NAME_UNKNOWN', `no registry endpoint at ${req.path}`, undefined, {
        status: 404,
      });
    }
    switch (route.kind) {
      case 'base':
        return only(method, ['GET', 'HEAD'], () => void res.status(200).json({}));
      case 'token':
        return only(method, ['GET'], () => this.token(req, res));
      case 'catalog':
        return only(method, ['GET'], () => this.catalog(req, res));
      case 'tags':
        return only(method, ['GET'], () => this.tags(route, req, res));
      case 'manifest':
        return only(method, ['GET', 'HEAD', 'PUT', 'DELETE'], () => this.manifest(route, method, req, res));
      case 'blob':
        return only(method, ['GET', 'HEAD', 'DELETE'], () => this.blob(route, method, req, res));
      case 'uploads':
        return only(method, ['POST'], () => this.startUpload(route, req, res));
      case 'upload':
        return only(method, ['GET', 'PATCH', 'PUT', 'DELETE'], () => this.upload(route, method, req, res));
      case 'referrers':
        return only(method, ['GET'], () => this.referrers(route, req, res));
    }
  }

  private async token(req: Request, res: Response): Promise<void> {
    if (this.tokens === null) {
      throw new RegistryError('UNSUPPORTED', 'token auth is not enabled (REGISTRY_AUTH=none)', undefined, {
        status: 404,
      });
    }
    const client = req.ip ?? req.socket.remoteAddress ?? '';
    const basic = parseBasic(req.headers.authorization);
    let answer;
    try {
      answer = await this.tokens.issue(
        req.headers.authorization,
        { service: req.query.service, scope: req.query.scope },
        client,
      );
    } catch (err) {
      if (basic !== null && err instanceof RegistryError && err.code === 'UNAUTHORIZED') {
        await this.audit?.record({ action: 'login', subject: basic.username, client, outcome: 'refused' });
      }
      throw err;
    }
    if (basic !== null) {
      await this.audit?.record({ action: 'login', subject: basic.username, client });
    }
    res.setHeader('Cache-Control', 'no-store');
    res.status(200).json(answer);
  }

  private async catalog(req: Request, res: Response): Promise<void> {
    const query = parsePageQuery(req.query.n, req.query.last);
    const page = await this.registry.listRepositories(query);
    setLink(res, '/v2/_catalog', query.n, page);
    res.status(200).json({ repositories: page.items });
  }

  private async tags(route: Route<'tags'>, req: Request, res: Response): Promise<void> {
    const query = parsePageQuery(req.query.n, req.query.last);
    const page = await this.registry.listTags(route.name, query);
    setLink(res, `/v2/${route.name}/tags/list`, query.n, page);
    res.status(200).json({ name: route.name, tags: page.items });
  }

  private async manifest(
    route: Route<'manifest'>,
    method: string,
    req: Request,
    res: Response,
  ): Promise<void> {
    const { name, reference } = route;
    if (method === 'PUT' || method === 'DELETE') {
      this.mirror?.assertWritable(name);
    } else {
      await this.mirror?.ensureManifest(name, reference);
    }
    if (method === 'PUT') {
      const put = await this.registry.putManifest(name, reference, req, registryContentType(req));
      await this.audit?.record({
        action: 'push',
        subject: registryGrantOf(req).subject,
        client: req.ip ?? '',
        repository: name,
        target: reference,
        detail: put.digest,
      });
      res.setHeader('Location', `/v2/${name}/manifests/${put.digest}`);
      res.setHeader('Docker-Content-Digest', put.digest);
      if (put.subject !== null) {
        res.setHeader('OCI-Subject', put.subject);
      }
      res.status(201).end();
      return;
    }
    if (method === 'DELETE') {
      await this.registry.deleteManifest(name, reference);
      await this.audit?.record({
        action: 'delete',
        subject: registryGrantOf(req).subject,
        client: req.ip ?? '',
        repository: name,
        target: reference,
      });
      res.status(202).end();
      return;
    }
    const m = await this.registry.getManifest(name, reference);
    res.setHeader('Content-Type', m.mediaType);
    res.setHeader('Content-Length', String(m.size));
    res.setHeader('Docker-Content-Digest', m.digest);
    res.setHeader('ETag', `"${m.digest}"`);
    res.status(200);
    res.end(method === 'HEAD' ? undefined : m.bytes);
  }

  private async blob(route: Route<'blob'>, method: string, req: Request, res: Response): Promise<void> {
    const { name, digest } = route;
    if (method === 'DELETE') {
      this.mirror?.assertWritable(name);
      await this.registry.deleteBlob(name, digest);
      res.status(202).end();
      return;
    }
    await this.mirror?.ensureBlob(name, digest);
    res.setHeader('Accept-Ranges', 'bytes');
    if (method === 'HEAD') {
      const info = await this.registry.statBlob(name, digest);
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Length', String(info.size));
      res.setHeader('Docker-Content-Digest', info.digest);
      res.status(200).end();
      return;
    }
    if (req.header('range') === undefined) {
      // With S3_REDIRECT_ENDPOINT: the bytes come from object storage, not through the API.
      const redirect = await this.registry.blobRedirect(name, digest);
      if (redirect !== null) {
        res.setHeader('Docker-Content-Digest', redirect.digest);
        res.setHeader('Location', redirect.url);
        res.status(307).end();
        return;
      }
    }
    let blob;
    try {
      blob = await this.registry.getBlob(name, digest, req.header('range'));
    } catch (err) {
      if (err instanceof RegistryError && err.code === 'RANGE_INVALID' && isSize(err.detail)) {
        res.setHeader('Content-Range', `bytes */${err.detail.size}`);
      }
      throw err;
    }
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Docker-Content-Digest', blob.digest);
    res.setHeader('ETag', `"${blob.digest}"`);
    if (blob.range !== null) {
      res.setHeader('Content-Range', `bytes ${blob.range.start}-${blob.range.end}/${blob.size}`);
      res.setHeader('Content-Length', String(blob.range.end - blob.range.start + 1));
      res.status(206);
    } else {
      res.setHeader('Content-Length', String(blob.size));
      res.status(200);
    }
    try {
      await sendStream(blob.stream, res);
    } catch (err) {
      // A client that hangs up mid-download (skopeo and podman do when they already have the
      // blob) is not a server fault: stop reading, log nothing.
      if ((err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE' && res.destroyed) {
        return;
      }
      throw err;
    }
  }

  private async startUpload(route: Route<'uploads'>, req: Request, res: Response): Promise<void> {
    const { name } = route;
    this.mirror?.assertWritable(name);
    const result = await this.registry.startUpload(name, {
      ...stringParam('digest', req.query.digest),
      ...stringParam('mount', req.query.mount),
      ...stringParam('from', req.query.from),
      mayRead: (repository) => registryGrantOf(req).mayPull(repository),
      body: req,
      ...contentLength(req),
    });
    switch (result.kind) {
      case 'created':
      case 'mounted':
        res.setHeader('Location', `/v2/${name}/blobs/${result.blob.digest}`);
        res.setHeader('Docker-Content-Digest', result.blob.digest);
        res.status(201).end();
        return;
      case 'session':
        setUploadHeaders(res, name, result.upload.id, result.upload.offset);
        res.status(202).end();
        return;
    }
  }

  private async upload(route: Route<'upload'>, method: string, req: Request, res: Response): Promise<void> {
    const { name, uploadId } = route;
    switch (method) {
      case 'GET': {
        const s = await this.registry.uploadStatus(name, uploadId);
        setUploadHeaders(res, name, s.id, s.offset);
        res.status(204).end();
        return;
      }
      case 'PATCH': {
        const s = await this.registry.appendUpload(name, uploadId, req, {
          ...stringParam('contentRange', req.header('content-range')),
          ...contentLength(req),
        });
        setUploadHeaders(res, name, s.id, s.offset);
        res.status(202).end();
        return;
      }
      case 'PUT': {
        const blob = await this.registry.completeUpload(
          name,
          uploadId,
          typeof req.query.digest === 'string' ? req.query.digest : undefined,
          hasBody(req) ? req : undefined,
          { ...stringParam('contentRange', req.header('content-range')), ...contentLength(req) },
        );
        res.setHeader('Location', `/v2/${name}/blobs/${blob.digest}`);
        res.setHeader('Docker-Content-Digest', blob.digest);
        res.status(201).end();
        return;
      }
      default: {
        await this.registry.cancelUpload(name, uploadId);
        res.status(204).end();
        return;
      }
    }
  }

  private async referrers(route: Route<'referrers'>, req: Request, res: Response): Promise<void> {
    const artifactType = typeof req.query.artifactType === 'string' ? req.query.artifactType : undefined;
    const index = await this.registry.referrers(route.name, route.digest, artifactType);
    if (artifactType !== undefined) {
      res.setHeader('OCI-Filters-Applied', 'artifactType');
    }
    // Exactly the index media type: Express's send() would append `; charset=utf-8`, which the
    // conformance suite (and strict clients) do not accept.
    const body = Buffer.from(JSON.stringify(index));
    res.setHeader('Content-Type', 'application/vnd.oci.image.index.v1+json');
    res.setHeader('Content-Length', String(body.length));
    res.status(200).end(body);
  }
}

async function only(method: string, allowed: string[], handle: () => unknown): Promise<void> {
  if (!allowed.includes(method)) {
    throw new RegistryError('UNSUPPORTED', `method ${method} not allowed here`, { allowed }, { status: 405 });
  }
  await handle();
}

function setUploadHeaders(res: Response, name: string, id: string, offset: number): void {
  res.setHeader('Location', `/v2/${name}/blobs/uploads/${id}`);
  res.setHeader('Range', uploadRangeHeader(offset));
  res.setHeader('Docker-Upload-UUID', id);
  res.setHeader('Content-Length', '0');
}

/** `Link: <url?n=&last=>; rel="next"` when a page has a successor (spec: listing tags). */
function setLink(res: Response, path: string, n: number | undefined, page: Page): void {
  if (page.next !== null && n !== undefined) {
    const q = new URLSearchParams({ n: String(n), last: page.next });
    res.setHeader('Link', `<${path}?${q.toString()}>; rel="next"`);
  }
}

function stringParam<K extends string>(key: K, value: unknown): Partial<Record<K, string>> {
  return typeof value === 'string' ? ({ [key]: value } as Record<K, string>) : {};
}

function contentLength(req: Request): { length?: number } {
  const raw = req.headers['content-length'];
  return raw !== undefined && /^\d{1,15}$/.test(raw) ? { length: Number(raw) } : {};
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || (contentLength(req).length ?? 0) > 0;
}

function isSize(detail: unknown): detail is { size: number } {
  return typeof detail === 'object' && detail !== null && 'size' in detail && typeof detail.size === 'number';
}
