/**
 * Media types Stratum reads and writes.
 * OCI: https://github.com/opencontainers/image-spec/blob/main/media-types.md
 * Docker: https://distribution.github.io/distribution/spec/manifest-v2-2/
 */
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerTarGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerTarZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  /** The empty descriptor's `{}` (artifacts without a config). */
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** One of the {@link MediaType} values. */
export type KnownMediaType = (typeof MediaType)[keyof typeof MediaType];

/** Media types of a single-image manifest. */
export const MANIFEST_MEDIA_TYPES = [MediaType.OciManifest, MediaType.DockerManifest] as const;
/** Media types of a multi-platform index / manifest list. */
export const INDEX_MEDIA_TYPES = [MediaType.OciIndex, MediaType.DockerManifestList] as const;
/** Every manifest media type the registry accepts, e.g. for an `Accept` header. */
export const ALL_MANIFEST_MEDIA_TYPES = [...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES] as const;

/** Layer compression as told by a media type. */
export type LayerCompression = 'none' | 'gzip' | 'zstd';

const LAYER_COMPRESSION: Record<string, LayerCompression> = {
  [MediaType.OciLayerTar]: 'none',
  [MediaType.OciLayerTarGzip]: 'gzip',
  [MediaType.OciLayerTarZstd]: 'zstd',
  [MediaType.DockerLayerGzip]: 'gzip',
  [MediaType.DockerForeignLayerGzip]: 'gzip',
};

/** Strips parameters and case from a Content-Type: `Application/JSON; charset=utf-8` -> `application/json`. */
export function normalizeMediaType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

/** True for an OCI image manifest or Docker schema2 manifest (parameters ignored). */
export function isManifestMediaType(mediaType: string): boolean {
  return (MANIFEST_MEDIA_TYPES as readonly string[]).includes(normalizeMediaType(mediaType));
}

/** True for an OCI image index or Docker manifest list (parameters ignored). */
export function isIndexMediaType(mediaType: string): boolean {
  return (INDEX_MEDIA_TYPES as readonly string[]).includes(normalizeMediaType(mediaType));
}

/** True for a layer media type we can apply (tar, tar+gzip, tar+zstd, Docker gzip). */
export function isLayerMediaType(mediaType: string): boolean {
  return normalizeMediaType(mediaType) in LAYER_COMPRESSION;
}

/** Compression of a layer media type, or null when it is not a layer type we know. */
export function layerCompression(mediaType: string): LayerCompression | null {
  return LAYER_COMPRESSION[normalizeMediaType(mediaType)] ?? null;
}

/** The layer media type for a compression, in the OCI or the Docker family (Docker has gzip only). */
export function layerMediaType(compression: LayerCompression, family: 'oci' | 'docker' = 'oci'): string {
  if (family === 'docker') {
    if (compression !== 'gzip') {
      throw new Error(`Docker schema2 has no layer media type for ${compression}`);
    }
    return MediaType.DockerLayerGzip;
  }
  switch (compression) {
    case 'none':
      return MediaType.OciLayerTar;
    case 'gzip':
      return MediaType.OciLayerTarGzip;
    case 'zstd':
      return MediaType.OciLayerTarZstd;
  }
}
