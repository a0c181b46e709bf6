import { Readable } from 'node:stream';
import { NextFunction, Request, Response } from 'express';
import { StratumError } from '@stratum/contracts';

/** True for the webhook receivers' paths. */
export function isHooksPath(url: string): boolean {
  return url.startsWith('/hooks/');
}

/**
 * Express middleware installed *before* Nest's global body parsers (see HooksModule), as the
 * registry's is: a webhook's signature is an HMAC of its exact bytes, which a JSON parse would
 * lose, so the Content-Type is hidden from the parsers and the controller reads the raw body.
 */
export function hooksRequestMiddleware(req: Request, _res: Response, next: NextFunction): void {
  if (isHooksPath(req.url) && req.headers['content-type'] !== undefined) {
    delete req.headers['content-type'];
  }
  next();
}

/** The whole body, refused with WEBHOOK_TOO_LARGE past `maxBytes`. */
export async function readRawBody(req: Readable, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      req.resume();
      throw new StratumError('WEBHOOK_TOO_LARGE', `webhook body larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
