/**
 * `@stratum/images`: images in our storage (resolve, write, tag, list) and container
 * filesystems made from their layers (overlay on the host's layer cache, snapshot to a layer).
 */
export * from './image-types';
export { ImageService, localReference } from './image.service';
export {
  ContainerFilesystems,
  type ContainerFs,
  type ContainerFilesystemsOptions,
} from './container-filesystems';
export { ImagesModule } from './images.module';
