import { Readable } from 'node:stream';
import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { StratumError } from '@stratum/contracts';
import {
  applyCommitChanges,
  ImageHistoryEntry,
  ImageService,
  ImageSummary,
  localReference,
  parseCommitChanges,
  RemovedImage,
  StoredImage,
} from '@stratum/images';
import { compressLayer } from '@stratum/layers';
import { ImageConfig, parsePlatform } from '@stratum/oci';
import { mirrorWriteConflict } from '@stratum/registry';
import { ImageDetail, ImportedImage, ImportImageQuery, TagImageBody, TaggedImage } from './images.dto';
import { rootfsTar } from './rootfs-upload';

/** Images API: import a root filesystem, list, inspect, tag. Storage work is ImageService's. */
@Injectable()
export class ImagesApiService {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly images: ImageService,
  ) {}

  /**
   * `docker import`: the tar becomes the image's only layer (compressed and hashed while it
   * streams into the blob store), with a config for the asked platform (default linux/amd64) whose one history entry carries
   * the message, as Docker's import writes it (moby daemon/images/image_import.go).
   */
  async import(body: Readable, query: ImportImageQuery): Promise<ImportedImage> {
    this.assertWritable(query.repository, query.tag);
    // Checked before the body is read: a bad change refuses the import without storing a byte.
    const changes = parseCommitChanges(query.change);
    const { tar, summary } = await rootfsTar(
      body,
      this.config.maxContextBytes,
      this.config.maxContextEntries,
    );
    // Both settle before anything is decided: the store may finish after the check failed.
    const [stored, checked] = await Promise.allSettled([this.images.putLayer(compressLayer(tar)), summary]);
    if (checked.status === 'rejected') {
      // Not a tar (or too large) after all: delete the blob this request created, as a refused
      // build context is; prefer the check's error over the store's echo of it.
      if (stored.status === 'fulfilled' && stored.value.created) {
        await this.images.discardLayer(stored.value.layer).catch(() => undefined);
      }
      throw checked.reason;
    }
    if (stored.status === 'rejected') {
      throw stored.reason;
    }
    const { layer } = stored.value;
    const created = new Date().toISOString();
    const comment = query.message !== '' ? query.message : 'Imported from -';
    const platform = parsePlatform(query.platform ?? 'linux/amd64');
    const config: ImageConfig = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
      // `docker import --change`: Dockerfile instructions applied to an empty config.
      config: applyCommitChanges({}, changes),
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      // Docker's import writes no created_by, only the comment ("Imported from -" by default).
      history: [{ created, comment }],
    };
    const written = await this.images.write({
      config,
      layers: [layer],
      tags: [`${query.repository}:${query.tag}`],
    });
    return {
      repository: query.repository,
      tag: query.tag,
      manifestDigest: written.manifestDigest,
      configDigest: written.configDigest,
      layer: { digest: layer.digest, diffId: layer.diffId, size: layer.size, mediaType: layer.mediaType },
    };
  }

  list(): Promise<ImageSummary[]> {
    return this.images.list();
  }

  /**
   * An image; for a multi-platform one (the reference names an index) the linux/amd64 image (else
   * the first platform's), with `index` and every platform's manifest listed in `platforms`.
   */
  async get(ref: string): Promise<ImageDetail> {
    const index = await this.images.resolveIndex(ref);
    if (index === null) {
      return detail(ref, await this.images.resolve(ref));
    }
    const main = index.platforms.find((p) => p.platform === 'linux/amd64') ?? index.platforms[0];
    if (main === undefined) {
      throw new StratumError(
        'IMAGE_UNKNOWN',
        `${ref} is an index with no platform image in ${index.repository}`,
      );
    }
    return {
      ...detail(ref, main.image),
      index: index.digest,
      platforms: index.platforms.map((p) => ({
        platform: p.platform,
        manifestDigest: p.image.manifestDigest,
        configDigest: p.image.configDigest,
        size: p.image.layers.reduce((n, l) => n + l.size, 0),
      })),
    };
  }

  history(ref: string): Promise<ImageHistoryEntry[]> {
    return this.images.history(ref);
  }

  remove(ref: string, force: boolean): Promise<RemovedImage> {
    const { repository, tag } = localReference(ref);
    this.assertWritable(repository, tag ?? 'latest');
    return this.images.remove(ref, { force });
  }

  async tag(ref: string, body: TagImageBody): Promise<TaggedImage> {
    this.assertWritable(body.repository, body.tag);
    const image = await this.images.tag(ref, `${body.repository}:${body.tag}`);
    return { repository: body.repository, tag: body.tag, manifestDigest: image.manifestDigest };
  }

  /** BAD_REQUEST naming the tag when it lies under a pull-through mirror prefix (read-only). */
  private assertWritable(repository: string, tag: string): void {
    const conflict = mirrorWriteConflict(
      repository,
      this.config.registryClients.mirrors.map((m) => m.prefix),
    );
    if (conflict !== null) {
      throw new StratumError('BAD_REQUEST', `tag "${repository}:${tag}": ${conflict}`);
    }
  }
}

function detail(reference: string, image: StoredImage): ImageDetail {
  const c = image.config;
  return {
    reference,
    repository: image.repository,
    manifestDigest: image.manifestDigest,
    configDigest: image.configDigest,
    created: c.created ?? null,
    author: c.author ?? null,
    architecture: c.architecture,
    os: c.os,
    size: image.layers.reduce((n, l) => n + l.size, 0),
    layers: image.layers.map((l) => ({
      digest: l.digest,
      diffId: l.diffId,
      size: l.size,
      mediaType: l.mediaType,
    })),
    history: c.history ?? [],
    config: c.config ?? {},
  };
}
