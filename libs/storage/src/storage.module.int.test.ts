import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ConfigModule, loadConfig } from '@stratum/config';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BlobStore } from './blob-store';
import { FsBlobStore } from './fs-blob-store';
import { FsRepositoryStore } from './fs-repository-store';
import { RepositoryStore } from './repository-store';
import { BLOB_STORE, REPOSITORY_STORE, StorageModule } from './storage.module';

describe('StorageModule', () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-storage-module-'));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('provides the fs stores configured by STRATUM_CONFIG', async () => {
    const config = loadConfig({ REDIS_URL: 'redis://127.0.0.1:1', DATA_DIR: dataDir });
    @Module({ imports: [ConfigModule.forRoot(config), StorageModule] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const blobs = app.get<BlobStore>(BLOB_STORE);
      const repos = app.get<RepositoryStore>(REPOSITORY_STORE);
      expect(blobs).toBeInstanceOf(FsBlobStore);
      expect(repos).toBeInstanceOf(FsRepositoryStore);
      expect((blobs as FsBlobStore).root).toBe(join(dataDir, 'store'));
      const { digest } = await blobs.put(Readable.from([Buffer.from('module')]));
      await repos.setTag('app', 'v1', digest);
      expect(await repos.getTag('app', 'v1')).toBe(digest);
    } finally {
      await app.close();
    }
  });
});
