import { Global, Module } from '@nestjs/common';
import { BLOB_STORE, BlobStore, REPOSITORY_STORE, RepositoryStore } from '@stratum/storage';
import { ImageService } from './image.service';

/** Provides {@link ImageService} over the configured storage (needs StorageModule). */
@Global()
@Module({
  providers: [
    {
      provide: ImageService,
      inject: [BLOB_STORE, REPOSITORY_STORE],
      useFactory: (blobs: BlobStore, repositories: RepositoryStore) => new ImageService(blobs, repositories),
    },
  ],
  exports: [ImageService],
})
export class ImagesModule {}
