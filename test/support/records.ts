import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { BuildRecord } from '@stratum/contracts';
import { BuildRecordStore, createRedis } from '@stratum/jobs';
import { startRedisServer } from './redis-server';

/** A queued build record with a new id, as the API creates one; `over` replaces fields. */
export function newBuildRecord(over: Partial<BuildRecord> = {}): BuildRecord {
  return {
    id: randomUUID(),
    state: 'queued',
    contextDigest: `sha256:${'c'.repeat(64)}`,
    contextSize: 10,
    dockerfile: 'Dockerfile',
    tags: ['a/b:1'],
    buildArgs: {},
    target: null,
    noCache: false,
    createdAt: new Date().toISOString(),
    startedAt: null,
    finishedAt: null,
    steps: [],
    imageDigest: null,
    error: null,
    attempts: 0,
    ...over,
  };
}

/** The build-secrets bundles (keys `stratum:build-secrets:*`) left in the Redis at `redisUrl`. */
export async function buildSecretBundleKeys(redisUrl: string): Promise<string[]> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl);
  try {
    return await redis.keys('stratum:build-secrets:*');
  } finally {
    redis.disconnect();
  }
}

/** A Redis server of a test file's own and a BuildRecordStore on it. */
export interface RecordStoreHandle {
  readonly redis: Redis;
  readonly records: BuildRecordStore;
  stop(): Promise<void>;
}

/** Starts a {@link RecordStoreHandle} (a test file's beforeAll; its afterAll calls `stop`). */
export async function startRecordStore(name: string): Promise<RecordStoreHandle> {
  const server = await startRedisServer();
  const redis = createRedis(server.url, name);
  const records = new BuildRecordStore(redis, 3600);
  return {
    redis,
    records,
    stop: async () => {
      await records.close();
      redis.disconnect();
      await server.stop();
    },
  };
}
