import { Module } from '@nestjs/common';
import { ImagesModule } from '@stratum/images';
import { ImagesController } from './images.controller';
import { ImagesApiService } from './images.service';

/** `/api/v1/images`: import, list, inspect, tag (over @stratum/images' ImageService). */
@Module({ imports: [ImagesModule], controllers: [ImagesController], providers: [ImagesApiService] })
export class ImagesApiModule {}
