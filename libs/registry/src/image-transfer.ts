import { Readable } from 'node:stream';
import {
  Descriptor,
  MediaType,
  normalizeMediaType,
  parseImageConfig,
  parseManifest,
  ParsedManifest,
  Platform,
} from '@stratum/oci';
import { BlobDigest, BlobStore, isBlobDigest, RepositoryStore, withQuota } from '@stratum/storage';
import { checkIndexEntries, DEFAULT_INDEX_LIMITS, IndexLimits, walkManifests } from './index-walk';
import { RegistryClient, selectPlatform } from './registry-client';
import { RegistryError } from './registry-error';
import { readLimited, storedMediaType } from './registry.service';

const MAX_MANIFEST = 4 * 1024 * 1024;
/** Layers that live at their `urls`, which a registry need not hold. */
const NON_DISTRIBUTABLE = new Set([
  MediaType.DockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

/** What happened to one blob of a push. */
export type BlobOutcome = 'exists' | 'mounted' | 'uploaded' | 'linked';

/** Progress callback of a transfer. */
export type TransferProgress = (event: { digest: string; size: number; outcome: BlobOutcome }) => void;

/** A manifest as read from our storage. */
interface LocalManifest {
  readonly digest: BlobDigest;
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly parsed: ParsedManifest;
}

/**
 * Copies images between our storage and repositories, ours or another registry's:
 * - {@link pushLocal}: links blobs and manifests into another repository of ours, tag last;
 * - {@link pushRemote}: uploads what the other registry lacks (HEAD first, cross-repository
 *   mount when a repository there already has it), child manifests by digest, the tagged
 *   manifest last, so no tag there ever names a missing blob;
 * - {@link fetchManifest} / {@link fetchBlob} / {@link fetchImage}: the other direction, for
 *   the pull-through mirror and {@link RemoteImageResolver}; every byte is verified on the way in.
 */
export class ImageTransfer {
  constructor(
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
    private readonly limits: IndexLimits = DEFAULT_INDEX_LIMITS,
  ) {}

  /**
   * Every manifest of the image `digest` names in `repository` (itself, and for an index each
   * manifest below it, once), children before parents, within {@link IndexLimits}: a tree over
   * them fails with MANIFEST_INVALID naming the limit before anything is copied.
   */
  async manifestsOf(repository: string, digest: BlobDigest, signal?: AbortSignal): Promise<BlobDigest[]> {
    return walkManifests(digest, async (d) => (await this.readManifest(repository, d)).parsed, {
      limits: this.limits,
      where: `${repository}@${digest}`,
      ...(signal !== undefined ? { signal } : {}),
    });
  }

  /** Reads a manifest of `repository` from our storage. */
  async readManifest(repository: string, digest: BlobDigest): Promise<LocalManifest> {
    if (!(await this.repositories.hasManifest(repository, digest))) {
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${repository}@${digest}`);
    }
    const bytes = await readLimited(await this.blobs.get(digest), MAX_MANIFEST, 'MANIFEST_INVALID');
    const parsed = parseManifest(bytes);
    if (!parsed.ok) {
      throw new RegistryError('MANIFEST_INVALID', `${repository}@${digest}: ${parsed.message}`);
    }
    return { digest, bytes, mediaType: storedMediaType(bytes), parsed };
  }

  /**
   * The image manifest `reference` (a tag or digest) names in our `repository` when it is there
   * whole (manifest, config, layers linked) and built for `platform`; else null. What a pull
   * left behind earlier, found without asking anyone.
   */
  async storedImage(repository: string, reference: string, platform: Platform): Promise<BlobDigest | null> {
    const digest = isBlobDigest(reference)
      ? reference
      : await this.repositories.getTag(repository, reference);
    if (digest === null || !(await this.repositories.hasManifest(repository, digest))) {
      return null;
    }
    let m = await this.readManifest(repository, digest);
    if (m.parsed.kind === 'oci-index' || m.parsed.kind === 'docker-manifest-list') {
      // A tag the pull-through mirror set names the index: its entry for the platform, if here.
      const entry = selectPlatform(m.parsed.manifest.manifests, platform);
      if (entry === null || !(await this.repositories.hasManifest(repository, asDigest(entry.digest)))) {
        return null;
      }
      m = await this.readManifest(repository, asDigest(entry.digest));
    }
    if (m.parsed.kind !== 'oci-manifest' && m.parsed.kind !== 'docker-manifest') {
      return null;
    }
    for (const blob of blobsOf(m.parsed)) {
      if (!(await this.repositories.hasBlob(repository, asDigest(blob.digest)))) {
        return null;
      }
    }
    const config = parseImageConfig(
      await readLimited(
        await this.blobs.get(asDigest(m.parsed.manifest.config.digest)),
        MAX_MANIFEST,
        'MANIFEST_INVALID',
      ),
    );
    if (
      !config.ok ||
      config.config.os !== platform.os ||
      config.config.architecture !== platform.architecture ||
      (platform.variant !== undefined && config.config.variant !== platform.variant)
    ) {
      return null;
    }
    return m.digest;
  }

  /** Links the image (every manifest below an index too) into `target`, then points `tag` at it. */
  async pushLocal(
    source: string,
    digest: BlobDigest,
    target: string,
    tag: string | null,
    progress?: TransferProgress,
    signal?: AbortSignal,
  ): Promise<void> {
    const done = new Set<string>();
    const manifests: { digest: BlobDigest; blobs: Descriptor[] }[] = [];
    for (const d of await this.manifestsOf(source, digest, signal)) {
      manifests.push({ digest: d, blobs: blobsOf((await this.readManifest(source, d)).parsed) });
    }
    // REPOSITORY_QUOTAS: the whole copy is admitted into the target first (refused: nothing linked).
    const all = manifests.flatMap((m) => [
      { digest: m.digest },
      ...m.blobs.map((b) => ({ digest: asDigest(b.digest), size: b.size })),
    ]);
    await withQuota(this.repositories, target, all, () =>
      this.linkCopy(source, manifests, target, done, progress, signal),
    );
    if (tag !== null) {
      await this.repositories.setTag(target, tag, digest);
    }
  }

  private async linkCopy(
    source: string,
    manifests: readonly { digest: BlobDigest; blobs: Descriptor[] }[],
    target: string,
    done: Set<string>,
    progress?: TransferProgress,
    signal?: AbortSignal,
  ): Promise<void> {
    for (const { digest: d, blobs } of manifests) {
      for (const blob of blobs) {
        const b = asDigest(blob.digest);
        if (done.has(b)) {
          continue;
        }
        signal?.throwIfAborted();
        if (!(await this.repositories.hasBlob(source, b))) {
          throw new RegistryError('BLOB_UNKNOWN', `${source} does not hold ${b}`, { digest: b });
        }
        await this.repositories.linkBlob(target, b);
        done.add(b);
        progress?.({ digest: b, size: blob.size, outcome: 'linked' });
      }
      await this.repositories.linkManifest(target, d);
    }
  }

  /**
   * Copies the image to `repository` of another registry and tags it `tag` there (or stores it by
   * digest only when `tag` is null). `mountFrom`: repositories of that registry that may already
   * hold the blobs (earlier targets of the same push), tried before uploading.
   */
  async pushRemote(
    client: RegistryClient,
    source: string,
    digest: BlobDigest,
    repository: string,
    tag: string | null,
    options: { mountFrom?: readonly string[]; progress?: TransferProgress; signal?: AbortSignal } = {},
  ): Promise<void> {
    const done = new Set<string>();
    for (const d of await this.manifestsOf(source, digest, options.signal)) {
      const m = await this.readManifest(source, d);
      for (const blob of blobsOf(m.parsed)) {
        const b = asDigest(blob.digest);
        if (!done.has(b)) {
          options.signal?.throwIfAborted();
          await this.pushBlob(client, b, blob.size, repository, options);
          done.add(b);
        }
      }
      // Manifests below the top go by digest; the top one by tag (when given), last.
      await client.putManifest(
        repository,
        d === digest ? (tag ?? digest) : d,
        m.bytes,
        m.mediaType,
        options.signal,
      );
    }
  }

  private async pushBlob(
    client: RegistryClient,
    digest: BlobDigest,
    size: number,
    repository: string,
    options: { mountFrom?: readonly string[]; progress?: TransferProgress; signal?: AbortSignal },
  ): Promise<void> {
    const { signal, progress } = options;
    if (await client.hasBlob(repository, digest, signal)) {
      progress?.({ digest, size, outcome: 'exists' });
      return;
    }
    for (const from of options.mountFrom ?? []) {
      if (from !== repository && (await client.mountBlob(repository, digest, from, signal))) {
        progress?.({ digest, size, outcome: 'mounted' });
        return;
      }
    }
    await client.uploadBlob(repository, digest, size, (range) => this.blobs.get(digest, range), signal);
    progress?.({ digest, size, outcome: 'uploaded' });
  }

  /**
   * Fetches a manifest from another registry into `repository` of ours (verified, stored byte for
   * byte, linked). Returns it; the caller decides when to tag (after the blobs, for a tag).
   */
  async fetchManifest(
    client: RegistryClient,
    upstream: string,
    reference: string,
    repository: string,
    signal?: AbortSignal,
  ): Promise<LocalManifest> {
    const m = await client.getManifest(upstream, reference, signal);
    // The mirror fetches an index's children on demand, one level per request: bounding the
    // entries of each index bounds what one client request can make us fetch and store.
    checkIndexEntries(m.parsed, `${upstream}:${reference}`, this.limits);
    await this.blobs.put(Readable.from([m.bytes]), {
      expectedDigest: m.digest,
      expectedSize: m.bytes.length,
    });
    await this.repositories.linkManifest(repository, m.digest);
    return { digest: m.digest, bytes: m.bytes, mediaType: m.mediaType, parsed: m.parsed };
  }

  /**
   * Makes a blob of the other registry's `upstream` repository available in our `repository`:
   * streamed into the blob store (verified by it) unless we hold the bytes already; linked.
   */
  async fetchBlob(
    client: RegistryClient,
    upstream: string,
    digest: BlobDigest,
    repository: string,
    signal?: AbortSignal,
    size?: number,
  ): Promise<void> {
    if (await this.repositories.hasBlob(repository, digest)) {
      return;
    }
    // Bytes held for another repository are linked only once upstream says this one has them,
    // so a mirror path is no way to read another repository's blobs by digest.
    if ((await this.blobs.has(digest)) && (await client.hasBlob(upstream, digest, signal))) {
      await this.repositories.linkBlob(repository, digest);
      return;
    }
    const blob = await client.getBlob(upstream, digest, signal, size);
    await this.blobs.put(blob.stream, {
      expectedDigest: digest,
      ...(size !== undefined ? { expectedSize: size } : {}),
    });
    await this.repositories.linkBlob(repository, digest);
  }

  /**
   * Fetches a whole image (the manifest for `platform` when `reference` names an index, its
   * config and layers) into `repository` and points `tag` at it, last. Returns the manifest's digest.
   * `tagIndex`: the index too is stored, and `tag` names it (as a pull-through mirror keeps a tag).
   */
  async fetchImage(
    client: RegistryClient,
    upstream: string,
    reference: string,
    repository: string,
    tag: string | null,
    platform?: Platform,
    signal?: AbortSignal,
    tagIndex = false,
  ): Promise<BlobDigest> {
    const { manifest, index } = await client.getImageManifest(upstream, reference, platform, signal);
    if (index !== null) {
      checkIndexEntries(index.parsed, `${upstream}:${reference}`, this.limits);
    }
    const parsed = manifest.parsed;
    checkIndexEntries(parsed, `${upstream}:${reference}`, this.limits);
    // REPOSITORY_QUOTAS: admitted by the sizes the manifest declares, before any byte is fetched.
    const quota = [
      ...blobsOf(parsed).map((b) => ({ digest: asDigest(b.digest), size: b.size })),
      { digest: manifest.digest, size: manifest.bytes.length },
      ...(tagIndex && index !== null ? [{ digest: index.digest, size: index.bytes.length }] : []),
    ];
    const tagged = await withQuota(this.repositories, repository, quota, async () => {
      for (const blob of blobsOf(parsed)) {
        await this.fetchBlob(client, upstream, asDigest(blob.digest), repository, signal, blob.size);
      }
      await this.blobs.put(Readable.from([manifest.bytes]), { expectedDigest: manifest.digest });
      await this.repositories.linkManifest(repository, manifest.digest);
      if (tagIndex && index !== null) {
        await this.blobs.put(Readable.from([index.bytes]), { expectedDigest: index.digest });
        await this.repositories.linkManifest(repository, index.digest);
        return index.digest;
      }
      return manifest.digest;
    });
    if (tag !== null) {
      await this.repositories.setTag(repository, tag, tagged);
    }
    return manifest.digest;
  }
}

/** Config and layers of an image manifest a registry must hold (none for an index). */
export function blobsOf(parsed: ParsedManifest): Descriptor[] {
  if (parsed.kind !== 'oci-manifest' && parsed.kind !== 'docker-manifest') {
    return [];
  }
  const { config, layers } = parsed.manifest;
  return [config, ...layers].filter(
    (d) => !(NON_DISTRIBUTABLE.has(normalizeMediaType(d.mediaType)) && (d.urls?.length ?? 0) > 0),
  );
}

function asDigest(d: string): BlobDigest {
  if (!isBlobDigest(d)) {
    throw new RegistryError('DIGEST_INVALID', `unsupported digest ${d}`);
  }
  return d;
}
