import { Request } from 'express';
import { StratumError } from '@stratum/contracts';

/**
 * The JSON of a request: the global parser's result for `application/json` (bodies up to its
 * 100 KB), else read here up to `maxBytes` — larger bodies (build secrets: up to 32 x 500 KiB,
 * base64) are sent with another type so the global limit stays small for every other route.
 */
export async function readJsonBody(req: Request, maxBytes: number): Promise<unknown> {
  if (
    req.body !== undefined &&
    typeof req.body === 'object' &&
    !Buffer.isBuffer(req.body) &&
    req.readableEnded
  ) {
    return req.body as unknown;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      req.resume();
      throw new StratumError('SECRET_TOO_LARGE', `request body is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new StratumError('BAD_REQUEST', 'request body is not valid JSON');
  }
}
