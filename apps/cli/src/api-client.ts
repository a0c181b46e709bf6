import { Readable } from 'node:stream';
import { BuildEvent, BuildPage, BuildRecord, ErrorBody } from '@stratum/contracts';
import { CliConfig } from '@stratum/config';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface SubmitOptions {
  readonly tags: string[];
  readonly dockerfile: string;
  readonly buildArgs: Record<string, string>;
  readonly target: string | null;
  readonly noCache: boolean;
  readonly push?: boolean;
  /** Build from this stored context (an earlier submission's `contextDigest`) instead of a body. */
  readonly context?: string;
}

/** A thin typed client of the Stratum REST API. */
export class ApiClient {
  constructor(readonly config: CliConfig) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.config.token === null ? extra : { ...extra, authorization: `Bearer ${this.config.token}` };
  }

  private async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.config.serverUrl}${path}`, {
        ...init,
        headers: this.headers((init.headers as Record<string, string> | undefined) ?? {}),
      });
    } catch (err) {
      throw new ApiError(
        0,
        'UNAVAILABLE',
        `cannot reach Stratum at ${this.config.serverUrl}: ${describe(err)}`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let body: Partial<ErrorBody> = {};
      try {
        body = JSON.parse(text) as ErrorBody;
      } catch {
        // not JSON
      }
      throw new ApiError(
        res.status,
        body.code ?? 'HTTP_ERROR',
        body.message ?? `HTTP ${res.status}: ${text}`,
      );
    }
    return JSON.parse(text) as T;
  }

  /** Submits a build: `context` is the tar, or null with `o.context` naming a stored one. */
  submitBuild(
    context: Readable | null,
    o: SubmitOptions,
  ): Promise<{ id: string; url: string; logsUrl: string; contextDigest: string }> {
    const q = new URLSearchParams();
    o.tags.forEach((t) => q.append('t', t));
    q.set('dockerfile', o.dockerfile);
    q.set('buildargs', JSON.stringify(o.buildArgs));
    if (o.target !== null) {
      q.set('target', o.target);
    }
    q.set('nocache', String(o.noCache));
    if (o.push === true) {
      q.set('push', 'true');
    }
    if (context === null) {
      q.set('context', o.context ?? '');
      return this.request(`/api/v1/builds?${q.toString()}`, { method: 'POST' });
    }
    return this.request(`/api/v1/builds?${q.toString()}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-tar' },
      body: Readable.toWeb(context) as ReadableStream,
      duplex: 'half',
    });
  }

  getBuild(id: string): Promise<BuildRecord> {
    return this.request(`/api/v1/builds/${encodeURIComponent(id)}`);
  }

  listBuilds(offset: number, limit: number): Promise<BuildPage> {
    return this.request(`/api/v1/builds?offset=${offset}&limit=${limit}`);
  }

  cancelBuild(id: string): Promise<BuildRecord> {
    return this.request(`/api/v1/builds/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  /** Follows a build's SSE stream, yielding events until the server ends it. */
  async *followBuild(id: string, signal?: AbortSignal): AsyncGenerator<BuildEvent> {
    let res: Response;
    try {
      res = await fetch(`${this.config.serverUrl}/api/v1/builds/${encodeURIComponent(id)}/logs`, {
        headers: this.headers({ accept: 'text/event-stream' }),
        signal,
      });
    } catch (err) {
      throw new ApiError(
        0,
        'UNAVAILABLE',
        `cannot reach Stratum at ${this.config.serverUrl}: ${describe(err)}`,
      );
    }
    if (!res.ok || res.body === null) {
      const body = (await res.json().catch(() => ({}))) as Partial<ErrorBody>;
      throw new ApiError(res.status, body.code ?? 'HTTP_ERROR', body.message ?? `HTTP ${res.status}`);
    }
    yield* parseSse(res.body);
  }
}

/** Parses an SSE byte stream into the JSON `data` of each event. */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<BuildEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    // The SSE spec allows CRLF, LF or CR line ends; a CR at the end of a chunk may be half of a CRLF.
    buffer = (buffer + decoder.decode(chunk, { stream: true })).replace(/\r\n|\r(?=.)/gs, '\n');
    let sep: number;
    while ((sep = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, sep);
      buffer = buffer.slice(sep + 2);
      const data = frame
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n');
      if (data !== '') {
        yield JSON.parse(data) as BuildEvent;
      }
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? cause.message : err.message;
  }
  return String(err);
}
