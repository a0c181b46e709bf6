/**
 * `@stratum/confine`: the one way a user-given name or path becomes a path on a host. Keys
 * (cache/secret ids) are hashed ({@link opaqueName}); readable names (build, upload, container
 * ids) are strictly checked ({@link checkName}); paths (Dockerfile, .dockerignore, COPY
 * sources and destinations, WORKDIR, an image's /etc/passwd) are resolved below their root
 * component by component without ever following a symlink out ({@link resolveInRoot},
 * {@link readFileBeneath}).
 */
export { ConfineError, type ConfineErrorCode } from './confine-error';
export {
  checkFileName,
  checkName,
  isSafeName,
  MAX_NAME_LENGTH,
  nameBeneath,
  opaqueName,
  opaquePath,
} from './names';
export {
  containerPath,
  readFileBeneath,
  resolveBeneath,
  resolveInRoot,
  type ResolveOptions,
  type SymlinkPolicy,
} from './resolve-beneath';
