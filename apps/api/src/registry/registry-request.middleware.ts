import { NextFunction, Request, Response } from 'express';

/** Where the real Content-Type of a /v2/ request is kept once hidden from the body parsers. */
const CONTENT_TYPE = Symbol('registryContentType');

type RegistryRequest = Request & { [CONTENT_TYPE]?: string };

/** True for `/v2`, `/v2/` and everything below it. */
export function isRegistryPath(url: string): boolean {
  return url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?');
}

/**
 * Express middleware installed *before* Nest's global body parsers (see RegistryModule).
 *
 * bootstrap.ts enables Nest's JSON and urlencoded parsers for the whole app. A registry request
 * must reach the controller with its body unread: blob chunks stream to disk, and a manifest's
 * digest is the hash of its exact bytes, which a parse + re-serialise would change (a client
 * may well send a manifest as `application/json`). The parsers only act on a request whose
 * Content-Type they recognise, so this middleware moves the header aside for /v2/ requests;
 * {@link registryContentType} gives it back to the controller.
 *
 * It also sets the header the spec requires on every /v2/ response.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#determining-support
 */
export function registryRequestMiddleware(req: Request, res: Response, next: NextFunction): void {
  if (isRegistryPath(req.url)) {
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    const contentType = req.headers['content-type'];
    if (contentType !== undefined) {
      (req as RegistryRequest)[CONTENT_TYPE] = contentType;
      delete req.headers['content-type'];
    }
  }
  next();
}

/** The request's Content-Type as the client sent it. */
export function registryContentType(req: Request): string | undefined {
  return (req as RegistryRequest)[CONTENT_TYPE] ?? req.headers['content-type'];
}
