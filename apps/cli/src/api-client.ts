import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import type * as Https from 'node:https';
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
  private https: { request: typeof Https.request; ca: string[] | undefined } | undefined;

  constructor(readonly config: CliConfig) {}

  /**
   * node:https (and tls) are loaded for the first https request only (3 ms of start-up an
   * http server does not need), with the CAs of `extraCaFile` trusted beside Node's roots.
   */
  private httpsRequest(): (
    url: URL,
    options: RequestOptions,
    cb: (res: IncomingMessage) => void,
  ) => ReturnType<typeof httpRequest> {
    if (this.https === undefined) {
      /* eslint-disable @typescript-eslint/no-require-imports -- deferred on purpose, see above */
      const https = require('node:https') as typeof Https;
      const { rootCertificates } = require('node:tls') as typeof import('node:tls');
      /* eslint-enable @typescript-eslint/no-require-imports */
      const file = this.config.extraCaFile;
      let ca: string[] | undefined;
      if (file !== null) {
        try {
          ca = [...rootCertificates, readFileSync(file, 'utf8')];
        } catch (err) {
          // As Node does with NODE_EXTRA_CA_CERTS: warn, and go on with its own roots.
          process.stderr.write(`Warning: ignoring extra certs from \`${file}\`: ${describe(err)}\n`);
        }
      }
      this.https = { request: https.request, ca };
    }
    const { request, ca } = this.https;
    return (url, options, cb) => request(url, ca === undefined ? options : { ...options, ca }, cb);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.config.token === null ? extra : { ...extra, authorization: `Bearer ${this.config.token}` };
  }

  /**
   * One HTTP exchange with node:http(s): the CLI runs once per command, and fetch's first call
   * (loading undici and web streams) cost ~18 ms of its start-up against ~4 ms for node:http.
   */
  private send(
    method: string,
    path: string,
    options: { headers?: Record<string, string>; body?: Readable; signal?: AbortSignal } = {},
  ): Promise<IncomingMessage> {
    const url = new URL(`${this.config.serverUrl}${path}`);
    const request = url.protocol === 'https:' ? this.httpsRequest() : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(
        url,
        { method, headers: this.headers(options.headers), signal: options.signal },
        resolve,
      );
      req.on('error', (err) => {
        options.body?.destroy();
        reject(
          new ApiError(
            0,
            'UNAVAILABLE',
            `cannot reach Stratum at ${this.config.serverUrl}: ${describe(err)}`,
          ),
        );
      });
      if (options.body === undefined) {
        req.end();
      } else {
        options.body.on('error', (err) => req.destroy(err));
        options.body.pipe(req);
      }
    });
  }

  private async request<T>(
    method: string,
    path: string,
    options: { headers?: Record<string, string>; body?: Readable } = {},
  ): Promise<T> {
    const res = await this.send(method, path, options);
    const text = await readText(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      let body: Partial<ErrorBody> = {};
      try {
        body = JSON.parse(text) as ErrorBody;
      } catch {
        // not JSON
      }
      throw new ApiError(status, body.code ?? 'HTTP_ERROR', body.message ?? `HTTP ${status}: ${text}`);
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
      return this.request('POST', `/api/v1/builds?${q.toString()}`);
    }
    return this.request('POST', `/api/v1/builds?${q.toString()}`, {
      headers: { 'content-type': 'application/x-tar' },
      body: context,
    });
  }

  getBuild(id: string): Promise<BuildRecord> {
    return this.request('GET', `/api/v1/builds/${encodeURIComponent(id)}`);
  }

  listBuilds(offset: number, limit: number): Promise<BuildPage> {
    return this.request('GET', `/api/v1/builds?offset=${offset}&limit=${limit}`);
  }

  cancelBuild(id: string): Promise<BuildRecord> {
    return this.request('DELETE', `/api/v1/builds/${encodeURIComponent(id)}`);
  }

  /** Follows a build's SSE stream, yielding events until the server ends it. */
  async *followBuild(id: string, signal?: AbortSignal): AsyncGenerator<BuildEvent> {
    const res = await this.send('GET', `/api/v1/builds/${encodeURIComponent(id)}/logs`, {
      headers: { accept: 'text/event-stream' },
      ...(signal !== undefined ? { signal } : {}),
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      let body: Partial<ErrorBody> = {};
      try {
        body = JSON.parse(await readText(res)) as ErrorBody;
      } catch {
        // not JSON
      }
      throw new ApiError(status, body.code ?? 'HTTP_ERROR', body.message ?? `HTTP ${status}`);
    }
    yield* parseSse(res);
  }
}

async function readText(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses an SSE byte stream into the JSON `data` of each event. */
export async function* parseSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<BuildEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
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
