import type { TarError, TarErrorCode } from '@stratum/tar';

/** Machine-readable codes of {@link LayerError}. */
export type LayerErrorCode =
  /** A tar entry (path, link target or a symlink on the way) would leave the target root. */
  | 'LAYER_PATH_ESCAPE'
  /** The input is not a well-formed tar (bad checksum, truncated, oversized metadata). */
  | 'LAYER_INVALID_TAR'
  /** A tar entry type or file name that Stratum does not handle (sparse files, sockets, non-UTF-8 names). */
  | 'LAYER_UNSUPPORTED_ENTRY'
  /** A hard link names a target that does not exist (yet) inside the root. */
  | 'LAYER_LINK_TARGET_MISSING'
  /** A parent component of an entry exists and is not a directory. */
  | 'LAYER_NOT_A_DIRECTORY'
  /** The uncompressed bytes do not hash to the expected diffID. */
  | 'LAYER_DIGEST_MISMATCH'
  /** A required host tool (mknod, setfattr, getfattr, zstd, mount) is not installed. */
  | 'LAYER_TOOL_MISSING'
  /** A host tool exited with an error. */
  | 'LAYER_TOOL_FAILED'
  /** mount/umount of an overlay failed. */
  | 'LAYER_MOUNT_FAILED'
  /** acquire() named a layer that is not in the cache. */
  | 'LAYER_NOT_CACHED'
  /** The upper dir uses overlay features a snapshot cannot express (redirect_dir, metacopy). */
  | 'LAYER_UNSUPPORTED_OVERLAY'
  /** A file changed size while it was being archived. */
  | 'LAYER_FILE_CHANGED'
  /** A caller passed an invalid argument. */
  | 'LAYER_INVALID_ARGUMENT'
  /** The tar holds more entries than the caller allows (`maxEntries`). */
  | 'LAYER_TOO_MANY_ENTRIES';

/**
 * The one error type of `@stratum/layers`. `code` is stable; `entry` names the tar entry
 * (or path) at fault when there is one.
 */
export class LayerError extends Error {
  override readonly name = 'LayerError';

  constructor(
    readonly code: LayerErrorCode,
    message: string,
    readonly entry?: string,
    options?: { cause?: unknown },
  ) {
    super(entry === undefined ? message : `${message} (entry ${JSON.stringify(entry)})`, options);
  }
}

const FROM_TAR: Record<TarErrorCode, LayerErrorCode> = {
  TAR_INVALID: 'LAYER_INVALID_TAR',
  TAR_UNSUPPORTED_ENTRY: 'LAYER_UNSUPPORTED_ENTRY',
  TAR_PATH_ESCAPE: 'LAYER_PATH_ESCAPE',
  TAR_LINK_TARGET_MISSING: 'LAYER_LINK_TARGET_MISSING',
  TAR_NOT_A_DIRECTORY: 'LAYER_NOT_A_DIRECTORY',
  // Only when a size limit was asked for: the input's fault, like a malformed tar.
  TAR_TOO_LARGE: 'LAYER_INVALID_TAR',
};

/** The LayerError for a TarError of the codec or the archive rules (same reason and entry). */
export function layerErrorOf(e: TarError): LayerError {
  return new LayerError(FROM_TAR[e.code], e.reason, e.entry, { cause: e });
}
