import { NextFunction, Request, Response } from 'express';

/**
 * Express middleware, installed before Nest's global body parsers (as the registry's is), for
 * the routes whose body is a tar: `POST /api/v1/builds` and `POST /api/v1/images/import`.
 *
 * The JSON and urlencoded parsers act on any request whose Content-Type they recognise, and
 * `curl --data-binary @ctx.tar` sends `application/x-www-form-urlencoded`: the parser then ate
 * the tar (a misleading "no body") or refused one over its 100 KB limit (a 500). A tar body is
 * a tar whatever its label, so the Content-Type is hidden from the parsers on these routes and
 * the controllers sniff plain/gzip/zstd from the bytes.
 */
export function tarBodyMiddleware(req: Request, _res: Response, next: NextFunction): void {
  if (req.method === 'POST' && req.headers['content-type'] !== undefined && isTarBodyPath(req.url)) {
    delete req.headers['content-type'];
  }
  next();
}

export function isTarBodyPath(url: string): boolean {
  const path = url.split('?', 1)[0].replace(/\/+$/, '');
  // `/api/v1/builds/check` takes a raw Dockerfile: the same reasoning keeps its body whole.
  return path === '/api/v1/builds' || path === '/api/v1/images/import' || path === '/api/v1/builds/check';
}
