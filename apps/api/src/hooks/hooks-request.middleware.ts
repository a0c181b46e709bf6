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

/**
 * Bytes held by all webhook bodies being received at once. Each body is already capped, but
 * twenty capped bodies in parallel are still twenty times the cap, held before anything is known
 * about who sent them; this keeps the sum bounded too.
 */
export class ByteBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** Takes `n` bytes; false (nothing taken) when that would pass the limit. */
  take(n: number): boolean {
    if (this.used + n > this.limit) {
      return false;
    }
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }

  get inUse(): number {
    return this.used;
  }
}

export interface RawBodyOptions {
  readonly maxBytes: number;
  /** Every chunk is charged here as it arrives; the caller gives back `held` when done. */
  readonly budget: ByteBudget;
  /** Sees every chunk as it arrives (signature and digest computed on the way). */
  readonly onChunk: (chunk: Buffer) => void;
}

/** The body read so far and how much of the budget it holds. */
export interface RawBody {
  readonly body: Buffer;
  readonly held: number;
}

/**
 * Reads the whole body, refused with WEBHOOK_TOO_LARGE past `maxBytes` (at once when the
 * Content-Length says so) and with UNAVAILABLE when the budget of all bodies in flight is spent.
 * On refusal the rest of the body is not read: the stream is paused and the caller answers with
 * `Connection: close`, so nothing past the limit is buffered or even drained. The budget taken is
 * given back here on refusal, by the caller (`held`) otherwise.
 */
export async function readRawBody(
  req: Readable & { headers?: Request['headers'] },
  opts: RawBodyOptions,
): Promise<RawBody> {
  const declared = Number(req.headers?.['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > opts.maxBytes) {
    throw tooLarge(opts.maxBytes);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const stop = (err: StratumError): never => {
    opts.budget.give(size);
    req.pause();
    throw err;
  };
  // destroyOnReturn false: leaving the loop early must not destroy the socket before the 413 is sent.
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    if (size + chunk.length > opts.maxBytes) {
      stop(tooLarge(opts.maxBytes));
    }
    if (!opts.budget.take(chunk.length)) {
      stop(
        new StratumError('UNAVAILABLE', 'too many webhook deliveries are being received at once; try again'),
      );
    }
    size += chunk.length;
    opts.onChunk(chunk);
    chunks.push(chunk);
  }
  return { body: Buffer.concat(chunks, size), held: size };
}

function tooLarge(maxBytes: number): StratumError {
  return new StratumError('WEBHOOK_TOO_LARGE', `webhook body larger than ${maxBytes} bytes`);
}
