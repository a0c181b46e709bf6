import { Readable, Transform, TransformCallback } from 'node:stream';
import { parseReference, Platform, withDefaultRegistry } from '@stratum/oci';
import { BlobDigest, BlobStore, isBlobDigest, isRepositoryName, RepositoryStore } from '@stratum/storage';
import { blobsOf } from './image-transfer';
import { RegistryClient, RegistryCredentials, RemoteManifest } from './registry-client';
import { RegistryClients } from './registry-clients';
import { RegistryError } from './registry-error';

/** What `docker pull` would fetch, resolved (the manifest read) but nothing stored yet. */
export interface PullPlan {
  /** The source with its registry filled in: `127.0.0.1:5001/team/app:1`, `docker.io/library/alpine:3`. */
  readonly source: string;
  /** Our repository and tag it lands in (tag null for a pull by digest). */
  readonly repository: string;
  readonly tag: string | null;
  readonly manifestDigest: BlobDigest;
  /** Config first, then the layers, bottom up. */
  readonly blobs: readonly { readonly digest: BlobDigest; readonly size: number }[];
  readonly client: RegistryClient;
  readonly upstream: string;
  readonly manifest: RemoteManifest;
}

/** Progress of a pull, one event per line of `POST /api/v1/images/pull`'s answer. */
export type PullEvent =
  | {
      readonly type: 'resolved';
      readonly source: string;
      readonly repository: string;
      readonly tag: string | null;
      readonly manifestDigest: string;
      readonly blobs: readonly { readonly digest: string; readonly size: number }[];
    }
  | {
      readonly type: 'blob';
      readonly digest: string;
      readonly size: number;
      /** Bytes received so far. */
      readonly current: number;
      /** `exists`: we held it already; `downloading`: bytes are coming; `done`: stored and verified. */
      readonly status: 'exists' | 'downloading' | 'done';
    }
  | {
      readonly type: 'done';
      readonly repository: string;
      readonly tag: string | null;
      readonly manifestDigest: string;
    }
  | { readonly type: 'error'; readonly code: string; readonly message: string };

export interface PullRequest {
  /** `[host[:port]/]repo[:tag|@digest]`; no registry means the default one (docker.io). */
  readonly source: string;
  /** Our repository (default: the source's path, Docker Hub's `library/` dropped as `docker images` shows it). */
  readonly repository?: string;
  /** Our tag (default: the source's tag; none for a pull by digest). */
  readonly tag?: string;
  readonly credentials?: RegistryCredentials | null;
  readonly platform?: Platform;
}

/** Emit a `downloading` event at most every this many bytes of one blob. */
const PROGRESS_STEP = 1024 * 1024;

/**
 * `docker pull` into our registry: reads the image manifest (the platform's one out of an index)
 * from another registry, streams its config and layers into the blob store (each verified
 * against its digest on the way; what we hold already is linked, not fetched), then the
 * manifest, then the tag, so the tag never names a missing blob. The registry client and the
 * store are the ones image-transfer.ts uses; this adds byte progress and our own naming.
 */
export class ImagePuller {
  constructor(
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
    private readonly clients: RegistryClients,
    /** DEFAULT_REGISTRY: where a name without a host is pulled from; null: names must have one. */
    private readonly defaultRegistry: string | null = 'docker.io',
  ) {}

  /** Parses the source, picks our name for it and reads its manifest. */
  async resolve(request: PullRequest, signal?: AbortSignal): Promise<PullPlan> {
    let ref;
    try {
      const parsed = parseReference(request.source);
      if (parsed.registry === null && this.defaultRegistry === null) {
        throw new Error(
          `"${request.source}" names no registry and there is no default (DEFAULT_REGISTRY=none)`,
        );
      }
      ref = withDefaultRegistry(parsed, this.defaultRegistry ?? 'docker.io');
    } catch (err) {
      throw new RegistryError('NAME_INVALID', err instanceof Error ? err.message : String(err));
    }
    const repository = request.repository ?? familiarName(ref.registry, ref.repository);
    if (!isRepositoryName(repository)) {
      throw new RegistryError(
        'NAME_INVALID',
        `"${request.source}" gives no repository name of this registry`,
      );
    }
    const tag = request.tag ?? (ref.digest === null ? (ref.tag ?? 'latest') : null);
    const client = this.clients.clientFor(ref.registry, request.credentials ?? null);
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const { manifest } = await client.getImageManifest(ref.repository, reference, request.platform, signal);
    const blobs = blobsOf(manifest.parsed).map((d) => {
      if (!isBlobDigest(d.digest)) {
        throw new RegistryError('DIGEST_INVALID', `unsupported digest ${d.digest}`);
      }
      return { digest: d.digest, size: d.size };
    });
    const shown = `${ref.registry}/${ref.repository}${ref.digest !== null ? `@${ref.digest}` : `:${reference}`}`;
    return {
      source: shown,
      repository,
      tag,
      manifestDigest: manifest.digest,
      blobs,
      client,
      upstream: ref.repository,
      manifest,
    };
  }

  /** Fetches what the plan names; `onEvent` sees every step. Returns the manifest digest. */
  async fetch(plan: PullPlan, onEvent: (e: PullEvent) => void, signal?: AbortSignal): Promise<BlobDigest> {
    onEvent({
      type: 'resolved',
      source: plan.source,
      repository: plan.repository,
      tag: plan.tag,
      manifestDigest: plan.manifestDigest,
      blobs: plan.blobs,
    });
    for (const blob of plan.blobs) {
      signal?.throwIfAborted();
      await this.fetchBlob(plan, blob, onEvent, signal);
    }
    await this.blobs.put(Readable.from([plan.manifest.bytes]), {
      expectedDigest: plan.manifestDigest,
      expectedSize: plan.manifest.bytes.length,
    });
    await this.repositories.linkManifest(plan.repository, plan.manifestDigest);
    if (plan.tag !== null) {
      await this.repositories.setTag(plan.repository, plan.tag, plan.manifestDigest);
    }
    onEvent({
      type: 'done',
      repository: plan.repository,
      tag: plan.tag,
      manifestDigest: plan.manifestDigest,
    });
    return plan.manifestDigest;
  }

  private async fetchBlob(
    plan: PullPlan,
    blob: { digest: BlobDigest; size: number },
    onEvent: (e: PullEvent) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const { digest, size } = blob;
    if (await this.repositories.hasBlob(plan.repository, digest)) {
      onEvent({ type: 'blob', digest, size, current: size, status: 'exists' });
      return;
    }
    // Bytes held for another repository are linked only once the other registry says it has
    // them: a manifest naming a digest is no way to read another repository's blobs (as
    // ImageTransfer.fetchBlob does for the mirror).
    if ((await this.blobs.has(digest)) && (await plan.client.hasBlob(plan.upstream, digest, signal))) {
      await this.repositories.linkBlob(plan.repository, digest);
      onEvent({ type: 'blob', digest, size, current: size, status: 'exists' });
      return;
    }
    onEvent({ type: 'blob', digest, size, current: 0, status: 'downloading' });
    const remote = await plan.client.getBlob(plan.upstream, digest, signal, size);
    const counted = remote.stream.pipe(
      new CountBytes((current) => onEvent({ type: 'blob', digest, size, current, status: 'downloading' })),
    );
    remote.stream.on('error', (err) => counted.destroy(err));
    await this.blobs.put(counted, { expectedDigest: digest, expectedSize: size });
    await this.repositories.linkBlob(plan.repository, digest);
    onEvent({ type: 'blob', digest, size, current: size, status: 'done' });
  }
}

/**
 * The name Docker shows for a pulled image, without its registry: Docker Hub's `library/alpine`
 * is `alpine`, `docker.io/team/x` is `team/x`, `host:5000/team/x` is `team/x`.
 */
export function familiarName(registry: string, repository: string): string {
  return registry === 'docker.io' && repository.startsWith('library/') ? repository.slice(8) : repository;
}

/** Passes bytes through, reporting the running count every PROGRESS_STEP bytes. */
class CountBytes extends Transform {
  private count = 0;
  private reported = 0;

  constructor(private readonly report: (count: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.count - this.reported >= PROGRESS_STEP) {
      this.reported = this.count;
      this.report(this.count);
    }
    cb(null, chunk);
  }
}
