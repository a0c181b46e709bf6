export { canonicalJson, encodeJson } from './canonical-json';
export type { EncodedJson } from './canonical-json';
export { DigestStream, isDigest, isSha256Digest, parseDigest, sha256Digest } from './digest';
export type { Digest, DigestResult, ParsedDigest, Sha256Digest } from './digest';
export {
  ALL_MANIFEST_MEDIA_TYPES,
  INDEX_MEDIA_TYPES,
  isIndexMediaType,
  isLayerMediaType,
  isManifestMediaType,
  layerCompression,
  layerMediaType,
  MANIFEST_MEDIA_TYPES,
  MediaType,
  normalizeMediaType,
} from './media-types';
export type { KnownMediaType, LayerCompression } from './media-types';
export { OciError } from './oci-error';
export type { OciErrorCode } from './oci-error';
export { manifestReferences, parseImageConfig, parseManifest } from './parse-manifest';
export type {
  ManifestRejection,
  ParsedManifest,
  ParseImageConfigResult,
  ParseManifestResult,
} from './parse-manifest';
export { formatReference, parseReference, tryParseReference, withDefaultRegistry } from './reference';
export type { ImageReference } from './reference';
export {
  containerConfigSchema,
  descriptorSchema,
  dockerManifestListSchema,
  dockerManifestSchema,
  historySchema,
  imageConfigSchema,
  ociImageIndexSchema,
  ociImageManifestSchema,
  platformSchema,
} from './schemas';
export type {
  ContainerConfig,
  Descriptor,
  DockerManifest,
  DockerManifestList,
  HistoryEntry,
  ImageConfig,
  OciImageIndex,
  OciImageManifest,
  Platform,
} from './schemas';
export {
  formatPlatform,
  MAX_PLATFORMS,
  nodeArchPlatform,
  parsePlatform,
  parsePlatformList,
  PlatformError,
  platformMatches,
  platformSlug,
} from './platform';
