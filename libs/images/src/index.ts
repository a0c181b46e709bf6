/**
 * `@stratum/images`: images in our storage (resolve, write, tag, list) and container
 * filesystems made from their layers (overlay on the host's layer cache, snapshot to a layer),
 * and the rules of `docker run` / `docker commit` over image configs.
 */
export * from './image-types';
export { ImageService, localReference } from './image.service';
export { historyRows, layerContentSize, type ImageHistoryEntry } from './image-history';
export {
  ContainerFilesystems,
  type ContainerFs,
  type ContainerFilesystemsOptions,
} from './container-filesystems';
export { ImagesModule } from './images.module';
export {
  applyCommitChanges,
  commandOf,
  commitConfig,
  type CommitInput,
  EMPTY_TAR_DIFF_ID,
  mergeEnv,
  parseCommitChanges,
  runConfig,
  type RunOverrides,
} from './container-config';
export { exportFilesystem, exportOciLayout } from './image-export';
