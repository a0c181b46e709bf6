import { randomUUID } from 'node:crypto';
import { BuildRecord } from '@stratum/contracts';

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
