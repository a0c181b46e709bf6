/**
 * `@stratum/layers`: layer tars and overlay mounts.
 *
 * - {@link applyLayer}: apply a (gzip/zstd/plain) layer tar to a directory, safely.
 * - {@link snapshotDirectory}: turn an overlay upper dir into a compressed, hashed layer.
 * - {@link createTarFromDirectory}, {@link compressLayer}: layers from whole trees / plain tars.
 * - {@link mountOverlay}, {@link unmountOverlay}, {@link listOverlayMountsUnder}: overlay mounts.
 * - {@link mountIdmappedOverlay}, {@link mountIdmapped}: layers and mount sources seen through a
 *   uid range, for steps in a user namespace (python3 runs the mount-API helper).
 * - {@link LayerCache}: the host's extracted-layer cache (overlay lowerdirs keyed by diffID).
 * - {@link execHelper}: short host commands run by a long-lived python3 process, so the
 *   worker's event loop never waits for a fork of itself.
 *
 * Host requirements (Debian): `python3`, `attr` (getfattr/setfattr), `zstd`, `pigz` (optional, faster
 * gzip), `util-linux` (mount/umount), `coreutils` (mknod). Runs as root.
 */
export { LayerError, type LayerErrorCode } from './layer-error';
export {
  ExecHelper,
  execHelper,
  HelperSpawnError,
  type HelperResult,
  type HiddenMounts,
} from './exec-helper';
export { diskUsage } from './fs-attrs';
export {
  mountSysfsOf,
  run as runHostCommand,
  unmount,
  type RunResult as HostCommandResult,
  type UnmountOutcome,
} from './host-tools';
export {
  applyLayer,
  knownContentDigest,
  OVERLAY_OPAQUE_XATTR,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
  type ApplyLayerOptions,
  type ApplyLayerResult,
  type FileContentDigest,
} from './layer-apply';
export {
  compressLayer,
  decompressed,
  detectCompression,
  LAYER_MEDIA_TYPES,
  probeCompressors,
  type CompressionOptions,
  type DetectedCompression,
  type LayerCompression,
  type LayerDigests,
  type LayerStream,
} from './layer-compression';
export {
  createTarFromDirectory,
  snapshotDirectory,
  tarDirectory,
  type SnapshotOptions,
} from './layer-snapshot';
export {
  listMountsUnder,
  unmountAllUnder,
  listOverlayMountsUnder,
  MAX_LOWER_DIRS,
  mountOverlay,
  readMountInfo,
  unmountOverlay,
  type MountInfo,
  type OverlayMountSpec,
  type UnmountResult,
} from './overlay-mount';
export {
  mountIdmapped,
  mountIdmappedOverlay,
  parseIdMap,
  probeIdmappedOverlay,
  removeMountPoint,
  type IdMap,
  type IdmappedOverlaySpec,
} from './idmapped-mount';
export { LayerCache, type CachedLayer, type EvictResult, type LayerLease } from './layer-cache';
export {
  overlayChanges,
  unchangedDirectories,
  type FsChange,
  type FsChangeKind,
  type OverlayChanges,
  type OverlayChangesOptions,
} from './overlay-changes';
