import { createHash } from 'node:crypto';
import { Readable, Transform, TransformCallback } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ALL_MANIFEST_MEDIA_TYPES, parseManifest, ParsedManifest, Platform } from '@stratum/oci';
import { REGISTRY_ERROR_STATUS, RegistryError, RegistryErrorCode } from './registry-error';
import { parseScopes, ResourceScope } from './registry-token';

/** A user name and password (or token) for another registry. */
export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

export interface RegistryClientOptions {
  /** `host[:port]` as in an image reference; `docker.io` means Docker Hub's API host. */
  readonly registry: string;
  /** Plain HTTP instead of HTTPS (a registry on a private network, or a test). */
  readonly insecure?: boolean;
  readonly credentials?: RegistryCredentials | null;
  readonly userAgent?: string;
  /** Upload blobs larger than this in PATCH chunks of this size (default 16 MiB). */
  readonly chunkSize?: number;
  /** Largest manifest accepted (default 4 MiB, as Distribution). */
  readonly maxManifestBytes?: number;
  /**
   * How long the first request (`GET /v2/`) may wait for an answer (default 30 s). A server that
   * accepts connections and drops them would otherwise hold a pull for minutes (Node's fetch
   * waits up to 300 s for response headers), and a pull tries the next mirror only after it.
   */
  readonly pingTimeoutMs?: number;
}

/** A manifest fetched from a registry, verified against its digest. */
export interface RemoteManifest {
  readonly digest: `sha256:${string}`;
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly parsed: ParsedManifest;
}

/** A blob's bytes as they arrive; the stream errors (DIGEST_INVALID) if they do not hash to the digest. */
export interface RemoteBlob {
  readonly size: number | null;
  readonly stream: Readable;
}

/** The platform picked from an index when none is asked for. */
export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/**
 * A failure talking to another registry. `transient` marks what may succeed when tried again
 * (5xx, 429, a network error); `remoteStatus` is the other registry's HTTP status (0: no answer).
 * Its own `status` is what our API answers: 404 stays 404, anything else is a bad gateway, so
 * the other registry's 401 never reaches a client as a challenge of ours.
 */
export class RemoteRegistryError extends RegistryError {
  constructor(
    code: RegistryErrorCode,
    message: string,
    readonly remoteStatus: number,
    readonly transient: boolean,
    cause?: unknown,
  ) {
    super(code, message, { remoteStatus }, { status: remoteStatus === 404 ? 404 : 502, cause });
    this.name = 'RemoteRegistryError';
  }
}

type Challenge =
  | { readonly scheme: 'bearer'; readonly realm: string; readonly service: string | null }
  | { readonly scheme: 'basic' }
  | { readonly scheme: 'none' };

const DOCKER_HUB_API = 'registry-1.docker.io';
const DEFAULT_CHUNK = 16 * 1024 * 1024;
const DEFAULT_MAX_MANIFEST = 4 * 1024 * 1024;
const DEFAULT_PING_TIMEOUT_MS = 30_000;
const SHA256 = /^sha256:[a-f0-9]{64}$/;

/**
 * A client of the OCI distribution API of another registry (or of ours, over HTTP).
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 *
 * Auth follows what the `/v2/` ping challenges: Bearer (the Docker token flow, one token per
 * scope set, fetched with Basic credentials when there are some) or Basic. The ping happens
 * before the first request so that streamed bodies are never sent unauthenticated (a stream
 * cannot be sent twice). Blob bytes are streamed and verified on the way, never held whole.
 */
export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: string;
  private readonly credentials: RegistryCredentials | null;
  private readonly userAgent: string;
  private readonly chunkSize: number;
  private readonly maxManifestBytes: number;
  private readonly pingTimeoutMs: number;
  private challenge: Promise<Challenge> | null = null;
  private readonly tokens = new Map<string, { token: string; expires: number }>();

  constructor(options: RegistryClientOptions) {
    this.registry = options.registry;
    const host = options.registry === 'docker.io' ? DOCKER_HUB_API : options.registry;
    this.baseUrl = `${options.insecure === true ? 'http' : 'https'}://${host}`;
    this.credentials = options.credentials ?? null;
    this.userAgent = options.userAgent ?? 'stratum-registry-client/1';
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK;
    this.maxManifestBytes = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST;
    this.pingTimeoutMs = options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS;
  }

  // ---------------------------------------------------------------- manifests

  /** A manifest (or index) by tag or digest, checked against the digest it was asked by. */
  async getManifest(repository: string, reference: string, signal?: AbortSignal): Promise<RemoteManifest> {
    const res = await this.send('GET', `/v2/${repository}/manifests/${reference}`, {
      scopes: [pull(repository)],
      headers: { Accept: ALL_MANIFEST_MEDIA_TYPES.join(', ') },
      signal,
    });
    await expectStatus(res, [200], `GET manifest ${repository}:${reference}`, 'MANIFEST_UNKNOWN');
    const bytes = await readBody(res, this.maxManifestBytes);
    const digest = sha256(bytes);
    if (reference.includes(':') && reference !== digest) {
      throw new RemoteRegistryError(
        'DIGEST_INVALID',
        `${this.registry}/${repository}@${reference} answered a manifest hashing to ${digest}`,
        res.status,
        false,
      );
    }
    const contentType = res.headers.get('content-type') ?? undefined;
    const parsed = parseManifest(bytes, contentType);
    if (!parsed.ok) {
      throw new RemoteRegistryError(
        'MANIFEST_INVALID',
        `${this.registry}/${repository}:${reference}: ${parsed.message}`,
        res.status,
        false,
      );
    }
    return { digest, mediaType: parsed.mediaType, bytes, parsed };
  }

  /** The digest a tag points at now (HEAD), or null when the registry does not know it. */
  async headManifest(repository: string, reference: string, signal?: AbortSignal): Promise<string | null> {
    const res = await this.send('HEAD', `/v2/${repository}/manifests/${reference}`, {
      scopes: [pull(repository)],
      headers: { Accept: ALL_MANIFEST_MEDIA_TYPES.join(', ') },
      signal,
    });
    if (res.status === 404) {
      return null;
    }
    await expectStatus(res, [200], `HEAD manifest ${repository}:${reference}`, 'MANIFEST_UNKNOWN');
    return res.headers.get('docker-content-digest');
  }

  /**
   * The image manifest for `platform` (default linux/amd64): the manifest itself when `reference`
   * names one, else the matching entry of the index / manifest list it names. `index` is that
   * index, when there was one.
   */
  async getImageManifest(
    repository: string,
    reference: string,
    platform: Platform = DEFAULT_PLATFORM,
    signal?: AbortSignal,
  ): Promise<{ manifest: RemoteManifest; index: RemoteManifest | null }> {
    const top = await this.getManifest(repository, reference, signal);
    if (top.parsed.kind !== 'oci-index' && top.parsed.kind !== 'docker-manifest-list') {
      return { manifest: top, index: null };
    }
    const entry = selectPlatform(top.parsed.manifest.manifests, platform);
    if (entry === null) {
      throw new RemoteRegistryError(
        'MANIFEST_UNKNOWN',
        `${this.registry}/${repository}:${reference} has no image for ${formatPlatform(platform)}`,
        404,
        false,
      );
    }
    return { manifest: await this.getManifest(repository, entry.digest, signal), index: top };
  }

  /** Stores a manifest under a tag or its digest; returns the digest the registry answers with. */
  async putManifest(
    repository: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const res = await this.send('PUT', `/v2/${repository}/manifests/${reference}`, {
      scopes: [push(repository)],
      headers: { 'Content-Type': mediaType, 'Content-Length': String(bytes.length) },
      body: bytes,
      signal,
    });
    await expectStatus(res, [200, 201], `PUT manifest ${repository}:${reference}`, 'MANIFEST_INVALID');
    await res.body?.cancel();
    const digest = sha256(bytes);
    const answered = res.headers.get('docker-content-digest');
    if (answered !== null && answered !== digest) {
      throw new RemoteRegistryError(
        'DIGEST_INVALID',
        `${this.registry} stored manifest ${digest} as ${answered}`,
        res.status,
        false,
      );
    }
    return digest;
  }

  // ---------------------------------------------------------------- blobs

  /** True when the repository has the blob (HEAD). */
  async hasBlob(repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.send('HEAD', `/v2/${repository}/blobs/${digest}`, {
      scopes: [pull(repository)],
      signal,
    });
    if (res.status === 404) {
      return false;
    }
    await expectStatus(res, [200], `HEAD blob ${repository}@${digest}`, 'BLOB_UNKNOWN');
    return true;
  }

  /**
   * A blob as a stream that is verified while it flows: it errors with DIGEST_INVALID at the end
   * when the bytes do not hash to `digest` (or SIZE_INVALID when their count is not `size`).
   */
  async getBlob(
    repository: string,
    digest: string,
    signal?: AbortSignal,
    size?: number,
  ): Promise<RemoteBlob> {
    if (!SHA256.test(digest)) {
      throw new RegistryError('DIGEST_INVALID', `unsupported digest ${digest}`);
    }
    const res = await this.send('GET', `/v2/${repository}/blobs/${digest}`, {
      scopes: [pull(repository)],
      signal,
    });
    await expectStatus(res, [200], `GET blob ${repository}@${digest}`, 'BLOB_UNKNOWN');
    if (res.body === null) {
      throw new RemoteRegistryError('BLOB_UNKNOWN', `GET blob ${digest}: no body`, res.status, true);
    }
    const length = res.headers.get('content-length');
    const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    const verify = new VerifyDigest(digest, size ?? (length !== null ? Number(length) : undefined));
    body.on('error', (err) => verify.destroy(err));
    return { size: length !== null ? Number(length) : null, stream: body.pipe(verify) };
  }

  /**
   * Cross-repository mount (`POST ?mount=&from=`): true when the registry linked the blob; false
   * when it opened an upload session instead (which is cancelled here).
   */
  async mountBlob(repository: string, digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
    const q = new URLSearchParams({ mount: digest, from });
    const res = await this.send('POST', `/v2/${repository}/blobs/uploads/?${q.toString()}`, {
      scopes: [push(repository), pull(from)],
      headers: { 'Content-Length': '0' },
      signal,
    });
    await expectStatus(res, [201, 202], `mount ${digest} from ${from}`, 'BLOB_UPLOAD_INVALID');
    await res.body?.cancel();
    if (res.status === 201) {
      return true;
    }
    const location = res.headers.get('location');
    if (location !== null) {
      const cancel = await this.send('DELETE', this.location(location), {
        scopes: [push(repository)],
        signal,
      }).catch(() => null);
      await cancel?.body?.cancel();
    }
    return false;
  }

  /**
   * Uploads a blob: one PUT when it is at most the chunk size, else PATCH chunks with
   * Content-Range and a closing PUT. `open(range)` gives the bytes (all, or an inclusive range):
   * each chunk is read from the source as it is sent, so nothing is held whole in memory.
   */
  async uploadBlob(
    repository: string,
    digest: string,
    size: number,
    open: (range?: { start: number; end: number }) => Promise<Readable>,
    signal?: AbortSignal,
  ): Promise<void> {
    const scopes = [push(repository)];
    const start = await this.send('POST', `/v2/${repository}/blobs/uploads/`, {
      scopes,
      headers: { 'Content-Length': '0' },
      signal,
    });
    await expectStatus(start, [202], `start upload to ${repository}`, 'BLOB_UPLOAD_INVALID');
    await start.body?.cancel();
    let location = start.headers.get('location');
    if (location === null) {
      throw new RemoteRegistryError('BLOB_UPLOAD_INVALID', 'upload started without a Location', 202, false);
    }
    if (size > this.chunkSize) {
      for (let offset = 0; offset < size; offset += this.chunkSize) {
        const end = Math.min(size, offset + this.chunkSize) - 1;
        const res = await this.send('PATCH', this.location(location), {
          scopes,
          headers: {
            'Content-Type': 'application/octet-stream',
            'Content-Range': `${offset}-${end}`,
            'Content-Length': String(end - offset + 1),
          },
          body: await open({ start: offset, end }),
          signal,
        });
        await expectStatus(res, [202], `PATCH chunk ${offset}-${end} of ${digest}`, 'BLOB_UPLOAD_INVALID');
        await res.body?.cancel();
        location = res.headers.get('location') ?? location;
      }
    }
    const url = this.location(location);
    const res = await this.send(
      'PUT',
      `${url}${url.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`,
      {
        scopes,
        headers:
          size > this.chunkSize
            ? { 'Content-Length': '0' }
            : { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) },
        ...(size > this.chunkSize ? {} : { body: await open() }),
        signal,
      },
    );
    await expectStatus(res, [201, 204], `complete upload of ${digest}`, 'BLOB_UPLOAD_INVALID');
    await res.body?.cancel();
  }

  // ---------------------------------------------------------------- HTTP + auth

  private location(location: string): string {
    return new URL(location, this.baseUrl).toString();
  }

  private async send(
    method: string,
    pathOrUrl: string,
    options: {
      scopes: ResourceScope[];
      headers?: Record<string, string>;
      body?: Buffer | Readable;
      signal?: AbortSignal | undefined;
    },
  ): Promise<Response> {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : `${this.baseUrl}${pathOrUrl}`;
    const challenge = await this.ping(options.signal);
    const attempt = async (auth: string | null): Promise<Response> => {
      const headers: Record<string, string> = { 'User-Agent': this.userAgent, ...options.headers };
      if (auth !== null) {
        headers.Authorization = auth;
      }
      const body = options.body;
      try {
        return await fetch(url, {
          method,
          headers,
          redirect: 'follow',
          ...(options.signal !== undefined ? { signal: options.signal } : {}),
          ...(body === undefined
            ? {}
            : Buffer.isBuffer(body)
              ? { body }
              : { body: Readable.toWeb(body), duplex: 'half' }),
        });
      } catch (err) {
        if (options.signal?.aborted === true) {
          throw err;
        }
        throw new RemoteRegistryError('UNAVAILABLE', `${method} ${url}: ${causeMessage(err)}`, 0, true, err);
      }
    };
    let res = await attempt(await this.authorization(challenge, options.scopes, false, options.signal));
    const retriable = options.body === undefined || Buffer.isBuffer(options.body);
    if (res.status === 401 && retriable) {
      // An expired token, or a scope the ping's challenge did not name: ask again once.
      const header = res.headers.get('www-authenticate');
      await res.body?.cancel();
      const fresh = header !== null ? parseChallenge(header) : challenge;
      const scopes =
        header !== null && fresh.scheme === 'bearer'
          ? [...options.scopes, ...parseScopes(challengeParams(header).scope)]
          : options.scopes;
      res = await attempt(await this.authorization(fresh, scopes, true, options.signal));
    }
    return res;
  }

  /** Learns how the registry authenticates, once (`GET /v2/`). */
  private ping(signal?: AbortSignal): Promise<Challenge> {
    this.challenge ??= (async (): Promise<Challenge> => {
      let res: Response;
      const timeout = AbortSignal.timeout(this.pingTimeoutMs);
      try {
        res = await fetch(`${this.baseUrl}/v2/`, {
          headers: { 'User-Agent': this.userAgent },
          signal: signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout,
        });
      } catch (err) {
        if (signal?.aborted === true) {
          throw err;
        }
        throw new RemoteRegistryError(
          'UNAVAILABLE',
          timeout.aborted
            ? `${this.baseUrl}/v2/: no answer within ${this.pingTimeoutMs / 1000} s`
            : `${this.baseUrl}/v2/: ${causeMessage(err)}`,
          0,
          true,
          err,
        );
      }
      await res.body?.cancel();
      const header = res.headers.get('www-authenticate');
      if (res.status === 401 && header !== null) {
        return parseChallenge(header);
      }
      if (res.status >= 500) {
        throw new RemoteRegistryError(
          'UNAVAILABLE',
          `${this.baseUrl}/v2/ answered ${res.status}`,
          res.status,
          true,
        );
      }
      return { scheme: 'none' };
    })();
    this.challenge.catch(() => (this.challenge = null));
    return this.challenge;
  }

  private async authorization(
    challenge: Challenge,
    scopes: ResourceScope[],
    refresh: boolean,
    signal?: AbortSignal,
  ): Promise<string | null> {
    switch (challenge.scheme) {
      case 'none':
        return null;
      case 'basic':
        return this.credentials === null ? null : basic(this.credentials);
      case 'bearer':
        return `Bearer ${await this.token(challenge, scopes, refresh, signal)}`;
    }
  }

  private async token(
    challenge: Extract<Challenge, { scheme: 'bearer' }>,
    scopes: ResourceScope[],
    refresh: boolean,
    signal?: AbortSignal,
  ): Promise<string> {
    const scopeParams = [...new Set(scopes.map((s) => `${s.type}:${s.name}:${s.actions.join(',')}`))].sort();
    const key = scopeParams.join(' ');
    const cached = this.tokens.get(key);
    if (!refresh && cached !== undefined && cached.expires > Date.now()) {
      return cached.token;
    }
    const url = new URL(challenge.realm);
    if (challenge.service !== null) {
      url.searchParams.set('service', challenge.service);
    }
    for (const s of scopeParams) {
      url.searchParams.append('scope', s);
    }
    const headers: Record<string, string> = { 'User-Agent': this.userAgent };
    if (this.credentials !== null) {
      headers.Authorization = basic(this.credentials);
      url.searchParams.set('account', this.credentials.username);
    }
    let res: Response;
    try {
      res = await fetch(url, { headers, ...(signal !== undefined ? { signal } : {}) });
    } catch (err) {
      throw new RemoteRegistryError(
        'UNAVAILABLE',
        `token from ${url.origin}: ${causeMessage(err)}`,
        0,
        true,
        err,
      );
    }
    await expectStatus(res, [200], `token from ${url.origin}${url.pathname}`, 'UNAUTHORIZED');
    const body = (await res.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new RemoteRegistryError('UNAUTHORIZED', `${url.origin} answered no token`, res.status, false);
    }
    // Renew a little early; Docker's spec says 60 s when the server does not tell.
    const ttl = Math.max(10, (body.expires_in ?? 60) - 10);
    this.tokens.set(key, { token, expires: Date.now() + ttl * 1000 });
    return token;
  }
}

/** Picks the entry of an index for a platform (variant only compared when asked for). */
export function selectPlatform<T extends { digest: string; platform?: Platform | undefined }>(
  manifests: readonly T[],
  platform: Platform,
): T | null {
  return (
    manifests.find(
      (m) =>
        m.platform !== undefined &&
        m.platform.os === platform.os &&
        m.platform.architecture === platform.architecture &&
        (platform.variant === undefined || m.platform.variant === platform.variant),
    ) ?? null
  );
}

function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ''}`;
}

const pull = (name: string): ResourceScope => ({ type: 'repository', name, actions: ['pull'] });
const push = (name: string): ResourceScope => ({ type: 'repository', name, actions: ['pull', 'push'] });

function basic(c: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

function sha256(bytes: Buffer): `sha256:${string}` {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** `key="value"` parameters of a challenge. */
function challengeParams(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)="([^"]*)"/g)) {
    out[(m[1] ?? '').toLowerCase()] = m[2] ?? '';
  }
  return out;
}

function parseChallenge(header: string): Challenge {
  const scheme = header.trim().split(/\s+/)[0]?.toLowerCase();
  if (scheme === 'bearer') {
    const p = challengeParams(header);
    if (p.realm !== undefined) {
      return { scheme: 'bearer', realm: p.realm, service: p.service ?? null };
    }
  }
  return scheme === 'basic' ? { scheme: 'basic' } : { scheme: 'none' };
}

function causeMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}

/** Throws a {@link RemoteRegistryError} for an unexpected status, with the registry's error code. */
async function expectStatus(
  res: Response,
  ok: number[],
  what: string,
  notFound: RegistryErrorCode,
): Promise<void> {
  if (ok.includes(res.status)) {
    return;
  }
  let detail = '';
  let remoteCode: string | undefined;
  try {
    const text = (await res.text()).slice(0, 4096);
    detail = text;
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    remoteCode = body.errors?.[0]?.code;
    detail = body.errors?.[0]?.message ?? text;
  } catch {
    // not a JSON error body
  }
  const code: RegistryErrorCode =
    remoteCode !== undefined && remoteCode in REGISTRY_ERROR_STATUS
      ? (remoteCode as RegistryErrorCode)
      : res.status === 401
        ? 'UNAUTHORIZED'
        : res.status === 403
          ? 'DENIED'
          : res.status === 404
            ? notFound
            : res.status === 429
              ? 'TOOMANYREQUESTS'
              : res.status >= 500
                ? 'UNAVAILABLE'
                : 'UNSUPPORTED';
  const transient = res.status >= 500 || res.status === 429 || res.status === 408;
  throw new RemoteRegistryError(
    code,
    `${what}: ${res.status}${remoteCode !== undefined ? ` ${remoteCode}` : ''}${detail !== '' ? `: ${detail}` : ''}`,
    res.status,
    transient,
  );
}

async function readBody(res: Response, max: number): Promise<Buffer> {
  if (res.body === null) {
    return Buffer.alloc(0);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > max) {
      await res.body.cancel().catch(() => undefined);
      throw new RemoteRegistryError(
        'MANIFEST_INVALID',
        `manifest larger than ${max} bytes`,
        res.status,
        false,
      );
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** Passes bytes through, hashing them; fails at the end unless they match digest (and size). */
class VerifyDigest extends Transform {
  private readonly hash = createHash('sha256');
  private count = 0;

  constructor(
    private readonly digest: string,
    private readonly size: number | undefined,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.digest) {
      cb(new RegistryError('DIGEST_INVALID', `blob ${this.digest} arrived as ${got}`));
    } else if (this.size !== undefined && this.count !== this.size) {
      cb(
        new RegistryError('SIZE_INVALID', `blob ${this.digest}: ${this.count} bytes, expected ${this.size}`),
      );
    } else {
      cb();
    }
  }
}
