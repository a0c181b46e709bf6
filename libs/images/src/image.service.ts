import { Readable } from 'node:stream';
import { StratumError } from '@stratum/contracts';
import { LayerStream } from '@stratum/layers';
import {
  Digest,
  encodeJson,
  type EncodedJson,
  ImageConfig,
  MediaType,
  OciImageManifest,
  parseImageConfig,
  parseManifest,
  parseReference,
  Platform,
  formatPlatform,
  platformMatches,
} from '@stratum/oci';
import { assertTagsRemovable, BlobDigest, BlobStore, RepositoryStore, withQuota } from '@stratum/storage';
import { historyRows, ImageHistoryEntry, layerContentSize } from './image-history';
import {
  IndexEntry,
  ImageSummary,
  LayerDescriptor,
  NewImage,
  RemovedImage,
  StoredImage,
  WrittenImage,
} from './image-types';

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      stream.destroy();
      throw new StratumError('MANIFEST_INVALID', `document larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const MAX_DOCUMENT = 4 * 1024 * 1024;
/** Content sizes of layers already read, by diffID (a layer never changes): ~100 bytes each. */
const SIZE_CACHE_ENTRIES = 10_000;

/** `repo:tag` -> parts; refuses references naming another registry. */
export function localReference(ref: string): {
  repository: string;
  tag: string | null;
  digest: Digest | null;
} {
  let parsed;
  try {
    parsed = parseReference(ref);
  } catch (err) {
    throw new StratumError('NAME_INVALID', err instanceof Error ? err.message : String(err));
  }
  if (parsed.registry !== null) {
    throw new StratumError(
      'NAME_INVALID',
      `"${ref}" names another registry (${parsed.registry}); expected repo[:tag]`,
    );
  }
  return { repository: parsed.repository, tag: parsed.tag, digest: parsed.digest as Digest | null };
}

/**
 * Images in our registry's storage: resolve a reference to its manifest and config, write a
 * new image (config + OCI manifest + tags, tags last so none names a missing blob), list, tag.
 */
export class ImageService {
  private readonly contentSizes = new Map<string, number>();

  constructor(
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
  ) {}

  private async readJson(digest: Digest): Promise<Buffer> {
    return readAll(await this.blobs.get(digest as BlobDigest), MAX_DOCUMENT);
  }

  /**
   * Resolves `repo`, `repo:tag` or `repo@sha256:…`. Throws IMAGE_UNKNOWN when absent. With
   * `platform`, a reference naming an index gives the index's image for that platform
   * (IMAGE_UNKNOWN naming the platforms it has when none matches).
   */
  async resolve(ref: string, platform?: Platform): Promise<StoredImage> {
    const { repository, tag, digest } = localReference(ref);
    let manifestDigest: Digest | null = digest;
    if (manifestDigest === null && tag !== null) {
      manifestDigest = await this.repositories.getTag(repository, tag);
    }
    if (
      manifestDigest === null ||
      !(await this.repositories.hasManifest(repository, manifestDigest as BlobDigest))
    ) {
      throw new StratumError('IMAGE_UNKNOWN', `image "${ref}" not found`);
    }
    return this.load(repository, manifestDigest, platform);
  }

  /**
   * Loads a manifest and its config by digest. An index is followed to its entry for
   * `platform` (nested indexes too, at most 8 levels), which must be in the same repository;
   * without a platform an index is refused.
   */
  async load(
    repository: string | null,
    manifestDigest: Digest,
    platform?: Platform,
    depth = 0,
  ): Promise<StoredImage> {
    const bytes = await this.readJson(manifestDigest);
    const parsed = parseManifest(bytes);
    if (!parsed.ok) {
      throw new StratumError('MANIFEST_INVALID', `manifest ${manifestDigest}: ${parsed.message}`);
    }
    if (parsed.kind !== 'oci-manifest' && parsed.kind !== 'docker-manifest') {
      if (platform === undefined) {
        throw new StratumError(
          'UNSUPPORTED',
          `manifest ${manifestDigest} is an index; pick a platform manifest`,
        );
      }
      if (depth >= 8) {
        throw new StratumError('MANIFEST_INVALID', `index ${manifestDigest}: more than 8 levels of indexes`);
      }
      const entries = parsed.manifest.manifests as { digest: string; platform?: Platform }[];
      const entry = entries.find((m) => platformMatches(m.platform, platform));
      if (entry === undefined) {
        const has = entries.flatMap((m) => (m.platform !== undefined ? [formatPlatform(m.platform)] : []));
        throw new StratumError(
          'IMAGE_UNKNOWN',
          `index ${manifestDigest} has no image for ${formatPlatform(platform)} (it has ${has.length > 0 ? has.join(', ') : 'no platform entries'})`,
        );
      }
      if (
        repository !== null &&
        !(await this.repositories.hasManifest(repository, entry.digest as BlobDigest))
      ) {
        throw new StratumError(
          'IMAGE_UNKNOWN',
          `index ${manifestDigest}: its ${formatPlatform(platform)} image ${entry.digest} is not in ${repository}`,
        );
      }
      return this.load(repository, entry.digest as Digest, platform, depth + 1);
    }
    const manifest = parsed.manifest as OciImageManifest;
    const configDigest = manifest.config.digest;
    const cfg = parseImageConfig(await this.readJson(configDigest));
    if (!cfg.ok) {
      throw new StratumError('MANIFEST_INVALID', `config ${configDigest}: ${cfg.message}`);
    }
    const diffIds = cfg.config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new StratumError(
        'MANIFEST_INVALID',
        `manifest ${manifestDigest} has ${manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`,
      );
    }
    const layers: LayerDescriptor[] = manifest.layers.map((l, i) => ({
      digest: l.digest,
      diffId: diffIds[i],
      size: l.size,
      mediaType: l.mediaType,
    }));
    return {
      manifestDigest,
      manifestSize: bytes.length,
      manifestMediaType: parsed.mediaType,
      manifest,
      configDigest,
      config: cfg.config,
      layers,
      repository,
    };
  }

  /** When `ref` names an index in our registry: its digest and its platforms' images; else null. */
  async resolveIndex(ref: string): Promise<{
    digest: Digest;
    repository: string;
    platforms: { platform: string; image: StoredImage }[];
  } | null> {
    const { repository, tag, digest } = localReference(ref);
    const d = digest ?? (tag !== null ? await this.repositories.getTag(repository, tag) : null);
    if (d === null || !(await this.repositories.hasManifest(repository, d as BlobDigest))) {
      return null;
    }
    const platforms = await this.indexImages(repository, d);
    return platforms === null ? null : { digest: d, repository, platforms };
  }

  /**
   * The images of an index (`repository` holds `digest`) with their platforms, in the index's
   * order (entries without a platform, or not in the repository, are left out); null when
   * `digest` is not an index.
   */
  async indexImages(
    repository: string,
    digest: Digest,
  ): Promise<{ platform: string; image: StoredImage }[] | null> {
    const parsed = parseManifest(await this.readJson(digest));
    if (!parsed.ok || (parsed.kind !== 'oci-index' && parsed.kind !== 'docker-manifest-list')) {
      return null;
    }
    const out: { platform: string; image: StoredImage }[] = [];
    for (const m of parsed.manifest.manifests as { digest: string; platform?: Platform }[]) {
      if (
        m.platform === undefined ||
        !(await this.repositories.hasManifest(repository, m.digest as BlobDigest))
      ) {
        continue;
      }
      try {
        out.push({
          platform: formatPlatform(m.platform),
          image: await this.load(repository, m.digest as Digest),
        });
      } catch {
        // an attestation or a nested index: not an image of a platform
      }
    }
    return out;
  }

  /** Pipes a layer stream (snapshot or compression) into the blob store and describes it. */
  async storeLayer(layer: LayerStream): Promise<LayerDescriptor> {
    return (await this.putLayer(layer)).layer;
  }

  /**
   * Like {@link storeLayer}, and says whether this call created the blob (false: the store had
   * it), so a caller that refuses the layer afterwards can delete what it added. When the
   * layer stream fails after the store took the bytes, the blob it created is deleted here.
   */
  async putLayer(layer: LayerStream): Promise<{ layer: LayerDescriptor; created: boolean }> {
    const [put, hashed] = await Promise.allSettled([this.blobs.put(layer.stream), layer.done]);
    const dropCreated = async (): Promise<void> => {
      if (put.status === 'fulfilled' && put.value.created) {
        await this.blobs.delete(put.value.digest).catch(() => undefined);
      }
    };
    if (hashed.status === 'rejected') {
      await dropCreated();
      throw hashed.reason;
    }
    if (put.status === 'rejected') {
      throw put.reason;
    }
    if (put.value.digest !== hashed.value.digest) {
      await dropCreated();
      throw new StratumError(
        'DIGEST_INVALID',
        `layer stored as ${put.value.digest} but hashed as ${hashed.value.digest}`,
      );
    }
    const digests = hashed.value;
    return {
      layer: {
        digest: put.value.digest,
        diffId: digests.diffId as Digest,
        size: digests.size,
        mediaType: digests.mediaType,
      },
      created: put.value.created,
    };
  }

  /** Deletes a layer blob this process stored and then refused (see {@link putLayer}). */
  async discardLayer(layer: LayerDescriptor): Promise<void> {
    await this.blobs.delete(layer.digest as BlobDigest);
  }

  /** Writes config and manifest blobs, links them into each tag's repository, then moves the tags. */
  async write(image: NewImage): Promise<WrittenImage> {
    const config: ImageConfig = {
      ...image.config,
      rootfs: { type: 'layers', diff_ids: image.layers.map((l) => l.diffId) },
    };
    const configJson = encodeJson(config);
    const manifest: OciImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configJson.digest, size: configJson.size },
      layers: image.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const manifestJson = encodeJson(manifest);
    // Independent store operations run together (a cached rebuild writes nothing new, and a
    // dozen sequential existence checks were most of its image write); what another one relies
    // on still comes first: blob links before the manifest link, every link before a tag. The
    // config and manifest blobs are stored side by side (each put ends with an fsync; a cold
    // steps build's two puts took 9-15 ms in sequence, 8-12 together): a blob is reachable
    // only through a link, and both are stored before any link is made.
    await Promise.all(
      [configJson, manifestJson].map(async (json) => {
        if (!(await this.blobs.has(json.digest))) {
          await this.putJson(json);
        }
      }),
    );
    const targets = image.tags.map((t) => {
      const r = localReference(t);
      return { repository: r.repository, tag: r.tag ?? 'latest' };
    });
    await Promise.all(
      targets.map(({ repository }) =>
        this.link(repository, manifestJson.digest, configJson.digest, image.layers),
      ),
    );
    if (image.untagged !== true) {
      await Promise.all(
        targets.map(({ repository, tag }) => this.repositories.setTag(repository, tag, manifestJson.digest)),
      );
    }
    return {
      manifestDigest: manifestJson.digest,
      configDigest: configJson.digest,
      manifestSize: manifestJson.size,
    };
  }

  /**
   * Writes an OCI image index of images already linked into the tags' repositories (a
   * multi-platform build's per-platform images), links it there and points the tags at it.
   * https://github.com/opencontainers/image-spec/blob/main/image-index.md
   */
  async writeIndex(
    entries: readonly IndexEntry[],
    tags: readonly string[],
  ): Promise<{ digest: Digest; size: number }> {
    const targets = tags.map((t) => {
      const r = localReference(t);
      return { repository: r.repository, tag: r.tag ?? 'latest' };
    });
    for (const { repository } of targets) {
      for (const e of entries) {
        if (!(await this.repositories.hasManifest(repository, e.digest as BlobDigest))) {
          throw new StratumError('MANIFEST_UNKNOWN', `index entry ${e.digest} is not in ${repository}`);
        }
      }
    }
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: entries.map((e) => ({
        mediaType: e.mediaType,
        digest: e.digest,
        size: e.size,
        platform: {
          architecture: e.platform.architecture,
          os: e.platform.os,
          ...(e.platform.variant !== undefined ? { variant: e.platform.variant } : {}),
        },
      })),
    };
    const json = encodeJson(index);
    if (!(await this.blobs.has(json.digest))) {
      await this.putJson(json);
    }
    await Promise.all(
      targets.map(({ repository }) => this.repositories.linkManifest(repository, json.digest)),
    );
    await Promise.all(
      targets.map(({ repository, tag }) => this.repositories.setTag(repository, tag, json.digest)),
    );
    return { digest: json.digest, size: json.size };
  }

  /** Stores JSON whose digest was computed here from its bytes. */
  private async putJson(json: EncodedJson): Promise<void> {
    await this.blobs.put(Readable.from([json.bytes]), { expectedDigest: json.digest });
  }

  private async link(
    repository: string,
    manifest: Digest,
    config: Digest,
    layers: readonly LayerDescriptor[],
  ): Promise<void> {
    // REPOSITORY_QUOTAS: the image is admitted as a whole before any link (refused: none made).
    const blobs = [
      ...layers.map((l) => ({ digest: l.digest as BlobDigest, size: l.size })),
      { digest: config as BlobDigest },
      { digest: manifest as BlobDigest },
    ];
    await withQuota(this.repositories, repository, blobs, async () => {
      await Promise.all(
        [...new Set([...layers.map((l) => l.digest), config])].map((d) =>
          this.repositories.linkBlob(repository, d as BlobDigest),
        ),
      );
      await this.repositories.linkManifest(repository, manifest as BlobDigest);
    });
  }

  /** Points `target` (`repo:tag`) at the image `ref` names, linking its blobs into the target repository. */
  async tag(ref: string, target: string): Promise<StoredImage> {
    const image = await this.resolve(ref);
    const t = localReference(target);
    await this.link(t.repository, image.manifestDigest, image.configDigest, image.layers);
    await this.repositories.setTag(t.repository, t.tag ?? 'latest', image.manifestDigest as BlobDigest);
    return image;
  }

  /**
   * `docker history`: the image's history entries, newest first, each with the content size of
   * the layer it made. Sizes are read from the layer blobs (decompressed, tar headers only) once
   * per process and remembered by diffID.
   */
  async history(ref: string): Promise<ImageHistoryEntry[]> {
    const image = await this.resolve(ref);
    const sizes = new Map<string, number>();
    // One layer at a time: a big image would otherwise inflate all of them at once.
    for (const layer of image.layers) {
      sizes.set(layer.diffId, await this.contentSize(layer));
    }
    return historyRows(image.config, image.configDigest, image.layers, (l) => sizes.get(l.diffId) ?? 0);
  }

  private async contentSize(layer: LayerDescriptor): Promise<number> {
    const known = this.contentSizes.get(layer.diffId);
    if (known !== undefined) {
      return known;
    }
    const size = await layerContentSize(await this.blobs.get(layer.digest as BlobDigest));
    if (this.contentSizes.size >= SIZE_CACHE_ENTRIES) {
      this.contentSizes.clear();
    }
    this.contentSizes.set(layer.diffId, size);
    return size;
  }

  /**
   * `docker rmi`: `repo:tag` removes the tag, and the manifest from the repository when no
   * other tag there points at it (then it is `deleted`); `repo@sha256:…` removes the manifest,
   * refused with CONFLICT while tags point at it unless `force` (which removes those tags too).
   * Blobs stay until garbage collection finds them unreferenced.
   */
  async remove(ref: string, options: { force?: boolean } = {}): Promise<RemovedImage> {
    const { repository, tag, digest } = localReference(ref);
    const manifest = digest ?? (tag !== null ? await this.repositories.getTag(repository, tag) : null);
    if (manifest === null || !(await this.repositories.hasManifest(repository, manifest as BlobDigest))) {
      throw new StratumError('IMAGE_UNKNOWN', `image "${ref}" not found`);
    }
    const pointing: string[] = [];
    for (const t of await this.repositories.listTags(repository)) {
      if ((await this.repositories.getTag(repository, t)) === manifest) {
        pointing.push(t);
      }
    }
    const untag = digest === null && tag !== null ? [tag] : pointing;
    if (digest !== null && pointing.length > 0 && options.force !== true) {
      throw new StratumError(
        'IMAGE_CONFLICT',
        `image ${repository}@${manifest} is tagged ${pointing.map((t) => `${repository}:${t}`).join(', ')}; remove the tags or force`,
      );
    }
    assertTagsRemovable(this.repositories, repository, untag);
    for (const t of untag) {
      await this.repositories.deleteTag(repository, t);
    }
    const remaining = pointing.filter((t) => !untag.includes(t));
    const deleted =
      remaining.length === 0 && (await this.repositories.unlinkManifest(repository, manifest as BlobDigest));
    return {
      untagged: untag.map((t) => `${repository}:${t}`),
      deleted: deleted ? manifest : null,
    };
  }

  /** Every tag of every repository, with sizes. */
  async list(): Promise<ImageSummary[]> {
    const out: ImageSummary[] = [];
    for (const repository of await this.repositories.listRepositories()) {
      for (const tag of await this.repositories.listTags(repository)) {
        const digest = await this.repositories.getTag(repository, tag);
        if (digest === null) {
          continue;
        }
        try {
          const platforms = await this.indexImages(repository, digest);
          if (platforms !== null) {
            // A multi-platform image: one row, as `docker images` shows it, with its platforms;
            // IMAGE ID is the first platform's config, SIZE what all platforms' layers take.
            if (platforms.length === 0) {
              continue;
            }
            out.push({
              repository,
              tag,
              manifestDigest: digest,
              configDigest: platforms[0].image.configDigest,
              size: platforms.reduce((n, p) => n + p.image.layers.reduce((m, l) => m + l.size, 0), 0),
              created:
                platforms
                  .map((p) => p.image.config.created ?? '')
                  .sort()
                  .pop() || null,
              platforms: platforms.map((p) => p.platform),
            });
            continue;
          }
          const image = await this.load(repository, digest);
          out.push({
            repository,
            tag,
            manifestDigest: digest,
            configDigest: image.configDigest,
            size: image.layers.reduce((n, l) => n + l.size, 0),
            created: image.config.created ?? null,
          });
        } catch {
          // a foreign artifact: not an image we list
        }
      }
    }
    return out;
  }
}
