import { parseReference, Platform, withDefaultRegistry } from '@stratum/oci';
import { BlobDigest } from '@stratum/storage';
import { ImageTransfer } from './image-transfer';
import { RegistryClients } from './registry-clients';
import { RegistryError } from './registry-error';

/** An image of another registry, now held in one of our repositories. */
export interface ResolvedRemoteImage {
  /** Our repository holding it: `remote/<host>/<name>` (the host's `:` written as `-`). */
  readonly repository: string;
  readonly manifestDigest: BlobDigest;
  /** The reference as asked, with the registry filled in (`docker.io/library/alpine:3.20`). */
  readonly reference: string;
}

/**
 * Brings an image of another registry into our storage for a build's `FROM`: the manifest for
 * the platform (linux/amd64 by default) out of an index, its config and its layers, each
 * verified against its digest while it streams into the blob store. What is there already is
 * not fetched again (blobs are shared by digest).
 *
 * Then `ImageService.load(resolved.repository, resolved.manifestDigest)` gives the StoredImage.
 */
export class RemoteImageResolver {
  constructor(
    private readonly transfer: ImageTransfer,
    private readonly clients: RegistryClients,
    private readonly defaultRegistry = 'docker.io',
  ) {}

  /** The local repository name a remote image is kept under. */
  static localRepository(registry: string, repository: string): string {
    return `remote/${registry.toLowerCase().replace(/[:[\]]/g, '-')}/${repository}`;
  }

  async resolve(reference: string, platform?: Platform, signal?: AbortSignal): Promise<ResolvedRemoteImage> {
    let ref;
    try {
      ref = withDefaultRegistry(parseReference(reference), this.defaultRegistry);
    } catch (err) {
      throw new RegistryError('NAME_INVALID', err instanceof Error ? err.message : String(err));
    }
    const client = this.clients.clientFor(ref.registry);
    const repository = RemoteImageResolver.localRepository(ref.registry, ref.repository);
    const manifestDigest = await this.transfer.fetchImage(
      client,
      ref.repository,
      ref.digest ?? ref.tag ?? 'latest',
      repository,
      ref.digest === null ? ref.tag : null,
      platform,
      signal,
    );
    const shown = `${ref.registry}/${ref.repository}${ref.digest !== null ? `@${ref.digest}` : `:${ref.tag ?? 'latest'}`}`;
    return { repository, manifestDigest, reference: shown };
  }
}
