import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import type * as Https from 'node:https';
import { Readable } from 'node:stream';
import type {
  BuildEvent,
  BuildPage,
  BuildRecord,
  ContainerChanges,
  ContainerRecord,
  ErrorBody,
  ProjectView,
  PushRecord,
  WorkerRemoved,
  WorkerView,
} from '@stratum/contracts';
import type { CheckResult } from '@stratum/dockerfile';
import type { ImageHistoryEntry, ImageSummary, RemovedImage } from '@stratum/images';
import type { PullEvent } from '@stratum/registry';
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

/** `GET /api/v1/projects/:name/secrets`. */
export interface ProjectSecretsListing {
  readonly secrets: string[];
  readonly ssh: { readonly id: string; readonly publicKeys: string[] }[];
}

export interface SubmitOptions {
  readonly tags: string[];
  readonly dockerfile: string;
  readonly buildArgs: Record<string, string>;
  readonly target: string | null;
  readonly noCache: boolean;
  readonly push?: boolean;
  /** `sandbox`, `none` or `default` (the service's): RUN steps' network (`docker build --network`). */
  readonly network?: 'sandbox' | 'none' | 'default';
  /** Build from this stored context (an earlier submission's `contextDigest`) instead of a body. */
  readonly context?: string;
  /** The `secretsId` of {@link ApiClient.putSecrets}. */
  readonly secrets?: string;
  /** Named contexts, name -> value as the server reads it (`sha256:` of an uploaded directory). */
  readonly buildContexts?: Record<string, string>;
  /** `linux/amd64,linux/arm64` (`docker buildx build --platform`): one image per platform, an index. */
  readonly platforms?: string;
}

/** `GET /api/v1/images/:ref` (apps/api ImageDetail). */
export interface ImageDetailView {
  readonly reference: string;
  readonly repository: string | null;
  readonly manifestDigest: string;
  readonly configDigest: string;
  readonly created: string | null;
  readonly author: string | null;
  readonly architecture: string;
  readonly os: string;
  readonly size: number;
  readonly layers: { digest: string; diffId: string; size: number; mediaType: string }[];
  readonly history: Record<string, unknown>[];
  readonly config: Record<string, unknown>;
}

/** Body of `POST /api/v1/containers`. */
export interface CreateContainerRequest {
  readonly image: string;
  readonly cmd: string[];
  readonly env?: string[];
  readonly workdir?: string;
  readonly user?: string;
  readonly network?: 'sandbox' | 'none' | 'host';
}

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** A thin typed client of the Stratum REST API. */
/** A robot account as the API lists it. */
export interface RobotView {
  name: string;
  username: string;
  rules: { pattern: string; actions: string[] }[];
  createdAt: string;
  createdBy: string;
  expiresAt: string;
}

export class ApiClient {
  private https: { request: typeof Https.request; ca: string[] | undefined } | undefined;

  /** `token`: sent as Bearer (STRATUM_TOKEN, else what `stratum login` stored); null: none. */
  constructor(
    readonly config: CliConfig,
    private readonly token: string | null = config.token,
  ) {}

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
    return this.token === null ? extra : { ...extra, authorization: `Bearer ${this.token}` };
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
    options: { headers?: Record<string, string>; body?: Readable; signal?: AbortSignal } = {},
  ): Promise<T> {
    const res = await this.send(method, path, options);
    const text = await readText(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      throw errorOf(status, text);
    }
    // 204 No Content: nothing to parse
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  private json<T>(method: string, path: string, body: unknown): Promise<T> {
    return this.request(method, path, {
      headers: { 'content-type': 'application/json' },
      body: Readable.from([Buffer.from(JSON.stringify(body))]),
    });
  }

  /** A request that answers 2xx (e.g. a probe of credentials): the status, nothing thrown for 4xx. */
  async status(method: string, path: string, headers: Record<string, string> = {}): Promise<number> {
    const res = await this.send(method, path, { headers });
    await readText(res);
    return res.statusCode ?? 0;
  }

  // ---------------------------------------------------------------- robot accounts

  createRobot(body: {
    name: string;
    expiresInSeconds: number;
    rules: { pattern: string; actions: string[] }[];
  }): Promise<RobotView & { token: string }> {
    return this.json('POST', '/api/v1/robots', body);
  }

  listRobots(): Promise<RobotView[]> {
    return this.request('GET', '/api/v1/robots');
  }

  revokeRobot(name: string): Promise<{ revoked: string }> {
    return this.request('DELETE', `/api/v1/robots/${encodeURIComponent(name)}`);
  }

  // ---------------------------------------------------------------- workers

  listWorkers(): Promise<WorkerView[]> {
    return this.request('GET', '/api/v1/workers');
  }

  removeWorker(id: string): Promise<WorkerRemoved> {
    return this.request('DELETE', `/api/v1/workers/${encodeURIComponent(id)}`);
  }

  // ---------------------------------------------------------------- images

  listImages(): Promise<ImageSummary[]> {
    return this.request('GET', '/api/v1/images');
  }

  getImage(ref: string): Promise<ImageDetailView> {
    return this.request('GET', `/api/v1/images/${encodeURIComponent(ref)}`);
  }

  imageHistory(ref: string): Promise<ImageHistoryEntry[]> {
    return this.request('GET', `/api/v1/images/${encodeURIComponent(ref)}/history`);
  }

  tagImage(ref: string, repository: string, tag: string): Promise<{ manifestDigest: string }> {
    return this.json('POST', `/api/v1/images/${encodeURIComponent(ref)}/tag`, { repository, tag });
  }

  removeImage(ref: string, force: boolean): Promise<RemovedImage> {
    return this.request('DELETE', `/api/v1/images/${encodeURIComponent(ref)}?force=${String(force)}`);
  }

  importImage(
    body: Readable,
    o: { repository: string; tag: string; message: string; changes: string[]; platform?: string },
  ): Promise<{ manifestDigest: string; configDigest: string }> {
    const q = new URLSearchParams({ repository: o.repository, tag: o.tag, message: o.message });
    if (o.platform !== undefined) {
      q.set('platform', o.platform);
    }
    o.changes.forEach((c) => q.append('change', c));
    return this.request('POST', `/api/v1/images/import?${q.toString()}`, {
      headers: { 'content-type': 'application/x-tar' },
      body,
    });
  }

  pushImage(ref: string, targets: string[], credentials?: Credentials): Promise<PushRecord> {
    return this.json('POST', `/api/v1/images/${encodeURIComponent(ref)}/push`, {
      targets,
      ...(credentials !== undefined ? { credentials } : {}),
    });
  }

  cancelPush(id: string): Promise<PushRecord> {
    return this.request('DELETE', `/api/v1/pushes/${encodeURIComponent(id)}`);
  }

  getPush(id: string): Promise<PushRecord> {
    return this.request('GET', `/api/v1/pushes/${encodeURIComponent(id)}`);
  }

  /** `POST /api/v1/images/pull`: yields its progress lines until the last. */
  async *pullImage(
    source: string,
    credentials: Credentials | undefined,
    signal?: AbortSignal,
  ): AsyncGenerator<PullEvent> {
    const res = await this.send('POST', '/api/v1/images/pull', {
      headers: { 'content-type': 'application/json' },
      body: Readable.from([
        Buffer.from(JSON.stringify({ source, ...(credentials !== undefined ? { credentials } : {}) })),
      ]),
      ...(signal !== undefined ? { signal } : {}),
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      throw errorOf(status, await readText(res));
    }
    let buffer = '';
    for await (const chunk of res) {
      buffer += (chunk as Buffer).toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim() !== '') {
          yield JSON.parse(line) as PullEvent;
        }
      }
    }
  }

  // ---------------------------------------------------------------- containers

  createContainer(body: CreateContainerRequest): Promise<{ id: string }> {
    return this.json('POST', '/api/v1/containers', body);
  }

  listContainers(): Promise<ContainerRecord[]> {
    return this.request('GET', '/api/v1/containers');
  }

  getContainer(id: string): Promise<ContainerRecord> {
    return this.request('GET', `/api/v1/containers/${encodeURIComponent(id)}`);
  }

  removeContainer(id: string): Promise<ContainerRecord> {
    return this.request('DELETE', `/api/v1/containers/${encodeURIComponent(id)}`);
  }

  commitContainer(
    id: string,
    body: { repository: string; tag: string; message: string; author: string; changes: string[] },
  ): Promise<{ commitId: string }> {
    return this.json('POST', `/api/v1/containers/${encodeURIComponent(id)}/commit`, body);
  }

  containerChanges(id: string): Promise<ContainerChanges> {
    return this.request('GET', `/api/v1/containers/${encodeURIComponent(id)}/changes`);
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
    if (o.network !== undefined) {
      q.set('network', o.network);
    }
    if (o.secrets !== undefined) {
      q.set('secrets', o.secrets);
    }
    if (o.buildContexts !== undefined && Object.keys(o.buildContexts).length > 0) {
      q.set('buildcontexts', JSON.stringify(o.buildContexts));
    }
    if (o.platforms !== undefined) {
      q.set('platform', o.platforms);
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

  /**
   * Hands the build's secrets over before the build is submitted (the tar stream is the body
   * of that request); answers the id the build names them by.
   */
  async putSecrets(
    secrets: ReadonlyMap<string, Buffer>,
    ssh: ReadonlyMap<string, readonly Buffer[]> = new Map(),
  ): Promise<string> {
    const body = JSON.stringify({
      secrets: Object.fromEntries([...secrets].map(([k, v]) => [k, v.toString('base64')])),
      ssh: Object.fromEntries([...ssh].map(([k, v]) => [k, v.map((b) => b.toString('base64'))])),
    });
    const res = await this.request<{ secretsId: string }>('POST', '/api/v1/builds/secrets', {
      // Not application/json: the API reads this type itself, past the global parser's 100 KB.
      headers: { 'content-type': 'application/vnd.stratum.secrets+json' },
      body: Readable.from([Buffer.from(body)]),
    });
    return res.secretsId;
  }

  /** BuildKit's build checks over `dockerfile` (its text), without building. */
  checkDockerfile(
    dockerfile: Buffer,
    buildArgs: Record<string, string>,
    target: string | null,
  ): Promise<CheckResult> {
    const q = new URLSearchParams({ buildargs: JSON.stringify(buildArgs) });
    if (target !== null) {
      q.set('target', target);
    }
    return this.request('POST', `/api/v1/builds/check?${q.toString()}`, {
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: Readable.from([dockerfile]),
    });
  }

  /** A project's secret names and ssh keys (public halves). */
  projectSecrets(project: string): Promise<ProjectSecretsListing> {
    return this.request('GET', `/api/v1/projects/${encodeURIComponent(project)}/secrets`);
  }

  /** Sets a project's secret (`kind` secret: `values[0]`) or ssh key(s) (`kind` ssh). */
  setProjectSecret(
    project: string,
    kind: 'secret' | 'ssh',
    id: string,
    values: readonly Buffer[],
  ): Promise<unknown> {
    const body =
      kind === 'secret'
        ? { value: values[0].toString('base64') }
        : { keys: values.map((v) => v.toString('base64')) };
    return this.request(
      'PUT',
      `/api/v1/projects/${encodeURIComponent(project)}/${kind === 'secret' ? 'secrets' : 'ssh'}/${encodeURIComponent(id)}`,
      {
        // Not application/json: a 500 KiB secret is past the global parser's 100 KB.
        headers: { 'content-type': 'application/vnd.stratum.secrets+json' },
        body: Readable.from([Buffer.from(JSON.stringify(body))]),
      },
    );
  }

  /** Changes the given fields of a project (`PUT /api/v1/projects/:name`); the others stay. */
  updateProject(project: string, fields: { readonly sshKnownHosts?: string | null }): Promise<ProjectView> {
    return this.json('PUT', `/api/v1/projects/${encodeURIComponent(project)}`, fields);
  }

  removeProjectSecret(project: string, kind: 'secret' | 'ssh', id: string): Promise<unknown> {
    return this.request(
      'DELETE',
      `/api/v1/projects/${encodeURIComponent(project)}/${kind === 'secret' ? 'secrets' : 'ssh'}/${encodeURIComponent(id)}`,
    );
  }

  getBuild(id: string): Promise<BuildRecord> {
    return this.request('GET', `/api/v1/builds/${encodeURIComponent(id)}`);
  }

  listBuilds(
    offset: number,
    limit: number,
    filter: { readonly project?: string; readonly ref?: string; readonly state?: string } = {},
  ): Promise<BuildPage> {
    const q = new URLSearchParams({ offset: String(offset), limit: String(limit) });
    for (const [k, v] of Object.entries(filter)) {
      if (v !== undefined) {
        q.set(k, v);
      }
    }
    return this.request('GET', `/api/v1/builds?${q.toString()}`);
  }

  cancelBuild(id: string): Promise<BuildRecord> {
    return this.request('DELETE', `/api/v1/builds/${encodeURIComponent(id)}`);
  }

  /** Stores a named context's tar (`--build-context name=DIR`); answers its digest. */
  putBuildContext(tar: Readable): Promise<{ digest: string; size: number }> {
    return this.request('POST', '/api/v1/builds/contexts', {
      headers: { 'content-type': 'application/x-tar' },
      body: tar,
    });
  }

  /** A succeeded build's `--output`: its final filesystem (`tar`) or an OCI layout tar (`oci`). */
  async buildOutput(id: string, type: 'tar' | 'oci'): Promise<IncomingMessage> {
    const res = await this.send('GET', `/api/v1/builds/${encodeURIComponent(id)}/output?type=${type}`);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      throw errorOf(status, await readText(res));
    }
    return res;
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

function errorOf(status: number, text: string): ApiError {
  let body: Partial<ErrorBody> = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    // not JSON
  }
  return new ApiError(status, body.code ?? 'HTTP_ERROR', body.message ?? `HTTP ${status}: ${text}`);
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
