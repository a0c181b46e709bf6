/** Machine-readable codes of {@link TarError}. */
export type TarErrorCode =
  /** Not a well-formed tar: bad checksum or number, truncated, malformed pax record, oversized metadata. */
  | 'TAR_INVALID'
  /** An entry type Stratum does not handle (sparse files, sockets…), or one the rules refuse (devices). */
  | 'TAR_UNSUPPORTED_ENTRY'
  /** An entry (its path, a symlink on its path, or a hard link target) would leave the archive root. */
  | 'TAR_PATH_ESCAPE'
  /** A hard link names a target that no earlier entry created. */
  | 'TAR_LINK_TARGET_MISSING'
  /** A parent component of an entry is an earlier entry that is not a directory. */
  | 'TAR_NOT_A_DIRECTORY'
  /** The uncompressed archive is larger than the limit it is read with. */
  | 'TAR_TOO_LARGE';

/**
 * The one error type of `@stratum/tar`. `code` is stable, `reason` is the message without the
 * entry, and `entry` names the tar entry at fault when there is one.
 */
export class TarError extends Error {
  override readonly name = 'TarError';

  constructor(
    readonly code: TarErrorCode,
    readonly reason: string,
    readonly entry?: string,
  ) {
    super(entry === undefined ? reason : `${reason} (entry ${JSON.stringify(entry)})`);
  }
}
