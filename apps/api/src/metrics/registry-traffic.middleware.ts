import { NextFunction, Request, Response } from 'express';
import { RegistryRoute } from '@stratum/registry';
import { registryRouteOf } from '../registry/registry-access.guard';
import { isRegistryPath } from '../registry/registry-request.middleware';

export interface RegistryTrafficCounters {
  /** Bytes of blob bodies sent by `GET /v2/<name>/blobs/<digest>` (whole or ranged). */
  pulled(bytes: number): void;
  /** Bytes of request bodies received by blob uploads (POST, PATCH and PUT of /blobs/uploads/). */
  pushed(bytes: number): void;
}

type Pushable = Request & { push(chunk: unknown, encoding?: BufferEncoding): boolean };

/**
 * Express middleware counting registry blob traffic without touching the registry controller.
 *
 * Pulls: a blob GET that finished with 200/206 sent exactly its Content-Length (a client that
 * hangs up midway is not counted). Pushes: Node's HTTP parser hands each body chunk to the
 * request with `req.push()`; counting there sees every byte delivered to the request without
 * adding a 'data' listener, which would switch the stream to flowing mode before the
 * controller pipes it and lose the chunks read in between.
 */
export function registryTrafficMiddleware(counters: RegistryTrafficCounters) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (isRegistryPath(req.url)) {
      const route = routeOf(req);
      const method = req.method.toUpperCase();
      if (route?.kind === 'blob' && method === 'GET') {
        res.once('finish', () => {
          const length = Number(res.getHeader('content-length'));
          if ((res.statusCode === 200 || res.statusCode === 206) && Number.isSafeInteger(length)) {
            counters.pulled(length);
          }
        });
      } else if (
        (route?.kind === 'uploads' && method === 'POST') ||
        (route?.kind === 'upload' && (method === 'PATCH' || method === 'PUT'))
      ) {
        const r = req as Pushable;
        const push = r.push.bind(r);
        r.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
          if (Buffer.isBuffer(chunk) || chunk instanceof Uint8Array) {
            counters.pushed(chunk.byteLength);
          } else if (typeof chunk === 'string') {
            counters.pushed(Buffer.byteLength(chunk, encoding));
          }
          return push(chunk, encoding);
        };
      }
    }
    next();
  };
}

/**
 * The request's registry endpoint, or null. A malformed path (a bad repository name or digest)
 * throws here; the controller answers it with its OCI error code, so it must not escape.
 */
function routeOf(req: Request): RegistryRoute | null {
  try {
    return registryRouteOf(req);
  } catch {
    return null;
  }
}
