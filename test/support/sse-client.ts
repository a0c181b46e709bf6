import { request } from 'node:http';

export interface SseFrame {
  readonly id: string | null;
  readonly event: string | null;
  readonly data: unknown;
}

export interface SseResult {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly frames: SseFrame[];
}

/**
 * Reads a Server-Sent Events stream until the server ends it (or `timeoutMs` passes, which
 * fails). `onFrame` sees each frame as it arrives; returning true closes the connection early.
 */
export function readSse(
  url: string,
  options: { lastEventId?: string; timeoutMs?: number; onFrame?: (f: SseFrame) => boolean | void } = {},
): Promise<SseResult> {
  return new Promise((resolve, reject) => {
    const frames: SseFrame[] = [];
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (options.lastEventId !== undefined) {
      headers['last-event-id'] = options.lastEventId;
    }
    const req = request(url, { headers }, (res) => {
      let buffer = '';
      let done = false;
      const finish = (): void => {
        if (!done) {
          done = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], frames });
        }
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let sep: number;
        while ((sep = buffer.indexOf('\n\n')) >= 0) {
          const raw = buffer.slice(0, sep);
          buffer = buffer.slice(sep + 2);
          let id: string | null = null;
          let event: string | null = null;
          const data: string[] = [];
          for (const line of raw.split('\n')) {
            if (line.startsWith('id:')) {
              id = line.slice(3).trim();
            } else if (line.startsWith('event:')) {
              event = line.slice(6).trim();
            } else if (line.startsWith('data:')) {
              data.push(line.slice(5).replace(/^ /, ''));
            }
          }
          if (data.length === 0) {
            continue;
          }
          const joined = data.join('\n');
          let parsed: unknown = joined;
          try {
            parsed = JSON.parse(joined);
          } catch {
            // not JSON (an error body, say): keep the text
          }
          const frame = { id, event, data: parsed };
          frames.push(frame);
          if (options.onFrame?.(frame) === true) {
            finish();
            req.destroy();
            return;
          }
        }
      });
      res.on('end', finish);
      res.on('close', finish);
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(
        new Error(
          `SSE ${url} did not end within ${options.timeoutMs ?? 60_000} ms; got ${frames.length} frames`,
        ),
      );
    }, options.timeoutMs ?? 60_000);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}
