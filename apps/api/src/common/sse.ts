import { Request, Response } from 'express';

export interface SseMessage {
  readonly id?: string;
  readonly event: string;
  readonly data: unknown;
}

/**
 * Writes an async sequence as Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html),
 * with a comment heartbeat so proxies keep the connection open, until the sequence ends or
 * the client goes away (then `abort` is signalled so the producer stops reading).
 */
export async function writeSse(
  req: Request,
  res: Response,
  produce: (signal: AbortSignal) => AsyncIterable<SseMessage>,
): Promise<void> {
  const abort = new AbortController();
  req.on('close', () => abort.abort());
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  try {
    for await (const message of produce(abort.signal)) {
      if (abort.signal.aborted) {
        break;
      }
      let frame = '';
      if (message.id !== undefined) {
        frame += `id: ${message.id}\n`;
      }
      frame += `event: ${message.event}\n`;
      frame += `data: ${JSON.stringify(message.data)}\n\n`;
      res.write(frame);
    }
  } finally {
    clearInterval(heartbeat);
    res.end();
  }
}
