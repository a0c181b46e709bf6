import type { Platform } from '@stratum/oci';
import type { Digest, ImageConfig, OciImageManifest } from '@stratum/oci';

/** One layer of an image: its blob, and the digest of its uncompressed tar. */
export interface LayerDescriptor {
  readonly digest: Digest;
  readonly diffId: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** An image as stored: manifest + config, both parsed, with the layers in order (bottom first). */
export interface StoredImage {
  readonly manifestDigest: Digest;
  readonly manifestSize: number;
  readonly manifestMediaType: string;
  readonly manifest: OciImageManifest;
  readonly configDigest: Digest;
  readonly config: ImageConfig;
  readonly layers: LayerDescriptor[];
  /** The repository the image was resolved in (null when resolved by bare digest). */
  readonly repository: string | null;
}

/** What is needed to write a new image. */
export interface NewImage {
  readonly config: ImageConfig;
  readonly layers: readonly LayerDescriptor[];
  /** `repo:tag` references (our registry) to point at the new manifest. */
  readonly tags: readonly string[];
  /**
   * Link the image into the tags' repositories but set no tag (one platform's image of a
   * multi-platform build: the index written after it is what the tags name).
   */
  readonly untagged?: boolean;
}

/** One entry of an image index to write: a stored image manifest and its platform. */
export interface IndexEntry {
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
  readonly platform: Platform;
}

export interface WrittenImage {
  readonly manifestDigest: Digest;
  readonly configDigest: Digest;
  readonly manifestSize: number;
}

/** Listing entry of `GET /api/v1/images`. */
export interface ImageSummary {
  readonly repository: string;
  readonly tag: string;
  readonly manifestDigest: Digest;
  /** The config's digest: Docker's image ID. */
  readonly configDigest: Digest;
  /** Sum of compressed layer sizes. */
  readonly size: number;
  readonly created: string | null;
  /** For a multi-platform image (the tag names an index): its platforms, `linux/arm64`… */
  readonly platforms?: string[];
}

/** What `DELETE /api/v1/images/:ref` (`docker rmi`) removed. */
export interface RemovedImage {
  /** `repo:tag` references removed. */
  readonly untagged: string[];
  /** The manifest, when the repository no longer holds it; null when tags still point at it. */
  readonly deleted: Digest | null;
}
