import type { Redis } from 'ioredis';
import { isTagName, RepositoryStore, BlobDigest, isBlobDigest } from '@stratum/storage';
import { ImageTransfer } from './image-transfer';
import { RegistryClient } from './registry-client';
import { RegistryError } from './registry-error';

/** One mirrored registry: `/v2/<prefix>/<name>/…` serves `<name>` of `client`'s registry. */
export interface MirrorEntry {
  readonly prefix: string;
  readonly client: RegistryClient;
}

/**
 * Why nothing may be written to `repository`, or null when it may: a repository at or under a
 * pull-through mirror prefix (REGISTRY_MIRRORS) holds upstream's content, and a build, tag,
 * commit or push there would replace what the mirror serves. The one check every write path
 * uses (/v2 pushes, builds' tags, push targets, image tags and imports, commits); each caller
 * turns the answer into its own error (DENIED on /v2, BAD_REQUEST naming the tag elsewhere).
 */
export function mirrorWriteConflict(repository: string, mirrorPrefixes: readonly string[]): string | null {
  for (const prefix of mirrorPrefixes) {
    if (repository === prefix || repository.startsWith(`${prefix}/`)) {
      return `repository "${repository}" lies under the pull-through mirror prefix "${prefix}/" (REGISTRY_MIRRORS), which is read-only`;
    }
  }
  return null;
}

/** Redis keys of the mirror. */
export const MirrorKeys = {
  /** Set while a mirrored tag is fresh: it is served without asking upstream. */
  tagFresh: (repository: string, tag: string) => `stratum:registry:mirror:${repository}:${tag}`,
} as const;

/**
 * Pull-through mirror of other registries (as Distribution's proxy mode): on a miss, a manifest
 * or blob is fetched from upstream, verified, stored in our storage and linked into the mirror
 * repository, then served as any other. A tag is re-checked upstream (HEAD) once its freshness
 * window has passed; when upstream cannot be reached, what we have is served. Nothing can be
 * pushed to a mirror repository.
 */
export class PullThroughCache {
  constructor(
    private readonly mirrors: readonly MirrorEntry[],
    private readonly transfer: ImageTransfer,
    private readonly repositories: RepositoryStore,
    private readonly redis: Redis,
    private readonly tagTtlSeconds = 300,
  ) {}

  /** The mirror serving `repository` and the upstream name, or null for one of our own repositories. */
  match(repository: string): { mirror: MirrorEntry; upstream: string } | null {
    for (const mirror of this.mirrors) {
      if (repository.startsWith(`${mirror.prefix}/`) && repository.length > mirror.prefix.length + 1) {
        return { mirror, upstream: repository.slice(mirror.prefix.length + 1) };
      }
    }
    return null;
  }

  /** The mirrors' prefixes, for {@link mirrorWriteConflict}. */
  get prefixes(): string[] {
    return this.mirrors.map((m) => m.prefix);
  }

  /** Refuses writes to a mirror repository (DENIED, 403). */
  assertWritable(repository: string): void {
    const conflict = mirrorWriteConflict(repository, this.prefixes);
    if (conflict !== null) {
      throw new RegistryError('DENIED', conflict, { repository });
    }
  }

  /** Makes sure the manifest `reference` names is in our storage (no-op for our own repositories). */
  async ensureManifest(repository: string, reference: string): Promise<void> {
    const m = this.match(repository);
    if (m === null) {
      return;
    }
    const { client } = m.mirror;
    if (isBlobDigest(reference)) {
      if (!(await this.repositories.hasManifest(repository, reference))) {
        await this.fetch(client, m.upstream, reference, repository, null);
      }
      return;
    }
    if (!isTagName(reference)) {
      return; // the registry service answers the error
    }
    const local = await this.repositories.getTag(repository, reference);
    if (local !== null && (await this.redis.exists(MirrorKeys.tagFresh(repository, reference))) === 1) {
      return;
    }
    try {
      const upstreamDigest = local === null ? null : await client.headManifest(m.upstream, reference);
      if (local === null || upstreamDigest !== local) {
        await this.fetch(client, m.upstream, reference, repository, reference);
      }
      await this.redis.set(MirrorKeys.tagFresh(repository, reference), '1', 'EX', this.tagTtlSeconds);
    } catch (err) {
      if (local === null) {
        throw err;
      }
      // Upstream unreachable or confused: serve what we have (stale beats down).
    }
  }

  /** Makes sure a blob of a mirror repository is in our storage. */
  async ensureBlob(repository: string, digest: string): Promise<void> {
    const m = this.match(repository);
    if (m === null || !isBlobDigest(digest) || (await this.repositories.hasBlob(repository, digest))) {
      return;
    }
    await this.transfer.fetchBlob(m.mirror.client, m.upstream, digest, repository);
  }

  private async fetch(
    client: RegistryClient,
    upstream: string,
    reference: string,
    repository: string,
    tag: string | null,
  ): Promise<BlobDigest> {
    const manifest = await this.transfer.fetchManifest(client, upstream, reference, repository);
    if (tag !== null) {
      // Blobs arrive on demand (the client asks for them next); the manifest is linked already,
      // and each blob request fetches what is missing.
      await this.repositories.setTag(repository, tag, manifest.digest);
    }
    return manifest.digest;
  }
}
