/**
 * `@stratum/tar`: the one tar codec of Stratum (POSIX ustar + pax, GNU long names on read).
 *
 * - {@link encodeHeader}, {@link padding}, {@link END_OF_ARCHIVE}: write deterministic entries
 *   (layer snapshots); {@link tarFiles}: archive listed files of a directory (build contexts).
 * - {@link ByteReader}, {@link readTar}: stream the entries of a plain tar (hashing it on the way
 *   when given a hash).
 * - {@link ArchiveRules}, {@link cleanEntryPath}, {@link whiteoutOf}: what an archive may do when
 *   extracted (path escapes, links, devices, whiteouts), checked by the API and the extractor alike.
 *
 * No dependencies beyond node:fs and node:path (the CLI loads it; the API and the worker pass
 * their own hash when they need one). Errors are {@link TarError}.
 */
export { TarError, type TarErrorCode } from './tar-error';
export {
  BLOCK,
  decodeHeader,
  encodeHeader,
  END_OF_ARCHIVE,
  entryTypeOf,
  padding,
  parsePax,
  type EncodableHeader,
  type RawHeader,
  type TarEntryType,
  type TarHeader,
} from './tar-format';
export { tarFiles, type ExtraFile } from './directory-tar';
export { ByteReader, readTar, type ByteReaderOptions, type TarEntry } from './tar-reader';
export {
  ArchiveRules,
  cleanEntryPath,
  isDeviceEntry,
  whiteoutOf,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
  type ArchiveRulesOptions,
  type Whiteout,
} from './archive-rules';
export { OutputBuffer } from './output-buffer';
