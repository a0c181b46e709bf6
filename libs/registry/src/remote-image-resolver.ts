import { ImageReference, parseReference, Platform, withDefaultRegistry } from '@stratum/oci';
import { BlobDigest } from '@stratum/storage';
import { ImageTransfer } from './image-transfer';
import { DEFAULT_PLATFORM, RegistryClient, RemoteRegistryError } from './registry-client';
import { RegistryClients } from './registry-clients';
import { RegistryError } from './registry-error';

/** Where base images our registry lacks come from (StratumConfig.registryClients has this shape). */
export interface PullSettings {
  /**
   * Registry of unqualified names (`alpine`, `team/base:1`); Docker Hub (`docker.io`, one-word
   * names get `library/`) as Docker. Null: unqualified names mean our registry only.
   */
  readonly defaultRegistry?: string | null;
  /** Per registry, mirrors (`http(s)://host[:port]`) tried in order before the registry itself. */
  readonly pullMirrors?: readonly { readonly registry: string; readonly urls: readonly string[] }[];
  /**
   * The pull-through mirrors we serve (REGISTRY_MIRRORS): `FROM <prefix>/<name>` is fetched from
   * that upstream into `<prefix>/<name>`, the repository the pull-through fills for /v2 clients.
   */
  readonly mirrors?: readonly {
    readonly prefix: string;
    readonly upstream: string;
    readonly username: string | null;
    readonly password: string | null;
  }[];
}

/** One place a pull tried and why it gave nothing. */
export interface PullAttempt {
  /** `mirror http://127.0.0.1:5001` or `registry https://registry-1.docker.io`. */
  readonly place: string;
  readonly error: string;
  /** True when the place answered that it does not have the image (not a failure to reach it). */
  readonly notFound: boolean;
}

/** An image of another registry, now held in one of our repositories. */
export interface ResolvedRemoteImage {
  /** Our repository holding it: `remote/<host>/<name>` (the host's `:` written as `-`). */
  readonly repository: string;
  readonly manifestDigest: BlobDigest;
  /** The reference as asked, with the registry filled in (`docker.io/library/alpine:3.20`). */
  readonly reference: string;
  /**
   * `stored`: pulled before and found in {@link repository} (nothing was asked of anyone);
   * `mirror` / `registry`: fetched now from {@link endpoint}.
   */
  readonly source: 'stored' | 'mirror' | 'registry';
  /** The URL of the mirror or registry it came from; null when stored. */
  readonly endpoint: string | null;
  /** Places tried before the one that answered (mirrors down or without the image). */
  readonly failed: readonly PullAttempt[];
}

/**
 * No place had the image: {@link attempts} says what each answered. MANIFEST_UNKNOWN when
 * every place answered that it does not have it, else UNAVAILABLE.
 */
export class ImagePullError extends RegistryError {
  constructor(
    readonly reference: string,
    readonly attempts: readonly PullAttempt[],
  ) {
    super(
      attempts.every((a) => a.notFound) ? 'MANIFEST_UNKNOWN' : 'UNAVAILABLE',
      `${reference}: ${attempts.map((a) => `${a.place}: ${a.error}`).join('; ')}`,
      { attempts },
    );
    this.name = 'ImagePullError';
  }
}

/**
 * Brings an image of another registry into our storage for a build's `FROM`, the way Docker's
 * daemon pulls: the registry's mirrors first, in order (Docker's `registry-mirrors`, here per
 * registry), then the registry itself; a mirror that is down or lacks the image passes to the
 * next place. What arrives is the manifest for the platform (linux/amd64 by default) out of an
 * index, its config and its layers, each verified against its digest while it streams into the
 * blob store, then tagged in `remote/<registry>/<name>` — as `docker pull` leaves an image in
 * `docker images` — so the next build finds it there and asks no one (a pull-through cache
 * that keeps what it has; delete the tag to pull again).
 *
 * Then `ImageService.load(resolved.repository, resolved.manifestDigest)` gives the StoredImage.
 */
export class RemoteImageResolver {
  private readonly defaultRegistry: string | null;

  constructor(
    private readonly transfer: ImageTransfer,
    private readonly clients: RegistryClients,
    private readonly settings: PullSettings = {},
  ) {
    this.defaultRegistry = settings.defaultRegistry === undefined ? 'docker.io' : settings.defaultRegistry;
  }

  /** The local repository name a remote image is kept under. */
  static localRepository(registry: string, repository: string): string {
    return `remote/${registry.toLowerCase().replace(/[:[\]]/g, '-')}/${repository}`;
  }

  /** The registry unqualified names are pulled from, or null when they mean our registry only. */
  get unqualifiedRegistry(): string | null {
    return this.defaultRegistry;
  }

  /**
   * The reference with its registry filled in (`busybox` -> `docker.io/library/busybox:latest`),
   * or null for an unqualified name when there is no default registry.
   */
  qualify(reference: string): (ImageReference & { registry: string }) | null {
    let ref: ImageReference;
    try {
      ref = parseReference(reference);
    } catch (err) {
      throw new RegistryError('NAME_INVALID', err instanceof Error ? err.message : String(err));
    }
    if (ref.registry === null && this.defaultRegistry === null) {
      return null;
    }
    return withDefaultRegistry(ref, ref.registry ?? this.defaultRegistry ?? 'docker.io');
  }

  /**
   * True when `reference` names a repository of a pull-through mirror we serve (`hub/library/alpine`
   * with REGISTRY_MIRRORS=hub=…): such a name is resolved here, because what the mirror holds may
   * be a manifest whose blobs were never fetched (the pull-through fetches them on demand).
   */
  servesPullThrough(reference: string): boolean {
    return this.pullThrough(reference) !== null;
  }

  private pullThrough(
    reference: string,
  ): { ref: ImageReference; client: RegistryClient; upstream: string; repository: string } | null {
    let ref: ImageReference;
    try {
      ref = parseReference(reference);
    } catch {
      return null;
    }
    if (ref.registry !== null) {
      return null;
    }
    for (const m of this.settings.mirrors ?? []) {
      if (ref.repository.startsWith(`${m.prefix}/`)) {
        const url = new URL(m.upstream);
        const credentials =
          m.username !== null && m.password !== null ? { username: m.username, password: m.password } : null;
        return {
          ref,
          client: this.clients.clientFor(url.host, credentials, url.protocol === 'http:'),
          upstream: ref.repository.slice(m.prefix.length + 1),
          repository: ref.repository,
        };
      }
    }
    return null;
  }

  /** The mirrors of `registry` then the registry itself, in the order a pull tries them. */
  endpoints(registry: string): { kind: 'mirror' | 'registry'; client: RegistryClient }[] {
    const mirrors = this.settings.pullMirrors?.find((m) => m.registry === registry)?.urls ?? [];
    return [
      ...mirrors.map((url) => {
        const u = new URL(url);
        return {
          kind: 'mirror' as const,
          client: this.clients.clientFor(u.host, null, u.protocol === 'http:'),
        };
      }),
      { kind: 'registry' as const, client: this.clients.clientFor(registry) },
    ];
  }

  async resolve(reference: string, platform?: Platform, signal?: AbortSignal): Promise<ResolvedRemoteImage> {
    const served = this.pullThrough(reference);
    if (served !== null) {
      return this.fetch(
        served.repository,
        served.ref,
        `${served.client.registry}/${served.upstream}`,
        [{ kind: 'registry', client: served.client }],
        served.upstream,
        platform,
        signal,
        true,
      );
    }
    const ref = this.qualify(reference);
    if (ref === null) {
      throw new RegistryError(
        'NAME_UNKNOWN',
        `"${reference}" names no registry and no default registry is configured (DEFAULT_REGISTRY=none)`,
      );
    }
    const repository = RemoteImageResolver.localRepository(ref.registry, ref.repository);
    return this.fetch(
      repository,
      ref,
      `${ref.registry}/${ref.repository}`,
      this.endpoints(ref.registry),
      ref.repository,
      platform,
      signal,
    );
  }

  /**
   * What `repository` holds for `ref` already, else the image fetched from the first of
   * `endpoints` that has it (`upstream`: its name there). `name` is the full name shown.
   * `tagIndex`: the tag names the index, as the pull-through mirror's tags do.
   */
  private async fetch(
    repository: string,
    ref: ImageReference,
    name: string,
    endpoints: { kind: 'mirror' | 'registry'; client: RegistryClient }[],
    upstream: string,
    platform: Platform | undefined,
    signal: AbortSignal | undefined,
    tagIndex = false,
  ): Promise<ResolvedRemoteImage> {
    const wanted = ref.digest ?? ref.tag ?? 'latest';
    const shown = `${name}${ref.digest !== null ? `@${ref.digest}` : `:${wanted}`}`;
    const stored = await this.transfer.storedImage(repository, wanted, platform ?? DEFAULT_PLATFORM);
    if (stored !== null) {
      return {
        repository,
        manifestDigest: stored,
        reference: shown,
        source: 'stored',
        endpoint: null,
        failed: [],
      };
    }
    const failed: PullAttempt[] = [];
    for (const { kind, client } of endpoints) {
      try {
        const manifestDigest = await this.transfer.fetchImage(
          client,
          upstream,
          wanted,
          repository,
          ref.digest === null ? ref.tag : null,
          platform,
          signal,
          tagIndex,
        );
        return {
          repository,
          manifestDigest,
          reference: shown,
          source: kind,
          endpoint: client.baseUrl,
          failed,
        };
      } catch (err) {
        if (signal?.aborted === true) {
          throw err;
        }
        failed.push({
          place: `${kind} ${client.baseUrl}`,
          error: err instanceof Error ? err.message : String(err),
          notFound: err instanceof RemoteRegistryError && err.remoteStatus === 404,
        });
      }
    }
    throw new ImagePullError(shown, failed);
  }
}
