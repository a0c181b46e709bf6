// Immutable tags on a real fs store with Redis claims: writers racing to set a new immutable tag
// to different digests cannot both win; the loser is refused naming the winner; a failed write
// gives its claim back.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { BlobDigest } from './blob-store';
import { FsRepositoryStore } from './fs-repository-store';
import { ImmutableTagsRepositoryStore, RedisTagClaims } from './immutable-tags';
import { RepositoryStore } from './repository-store';

let server: RedisServerHandle;
let redis: Redis;
let root: string;

const d = (n: number): BlobDigest => `sha256:${n.toString(16).padStart(64, '0')}`;

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
  root = await mkdtemp(join(tmpdir(), 'stratum-immutable-int-'));
});

afterAll(async () => {
  await redis?.quit();
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

it('of 12 writers racing on a new immutable tag exactly one wins, and the tag names its digest', async () => {
  const store = new ImmutableTagsRepositoryStore(
    new FsRepositoryStore(join(root, 'race')),
    [{ repository: 'team/*', tag: 'v*' }],
    new RedisTagClaims(redis),
  );
  const results = await Promise.allSettled(
    Array.from({ length: 12 }, (_, i) => store.setTag('team/app', 'v1', d(i + 1))),
  );
  const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [d(i + 1)] : []));
  expect(won).toHaveLength(1);
  expect(await store.getTag('team/app', 'v1')).toBe(won[0]);
  for (const r of results) {
    if (r.status === 'rejected') {
      expect(r.reason).toMatchObject({ code: 'TAG_IMMUTABLE' });
      expect((r.reason as Error).message).toContain(`it names ${won[0]}`);
    }
  }
  // the same digest again is fine; a mutable tag moves freely
  await store.setTag('team/app', 'v1', won[0]);
  await store.setTag('team/app', 'latest', d(20));
  await store.setTag('team/app', 'latest', d(21));
});

it('a write that fails gives its claim back, so the next writer is not refused', async () => {
  const inner = new FsRepositoryStore(join(root, 'fail'));
  let fail = true;
  const flaky: RepositoryStore = Object.assign(Object.create(inner) as RepositoryStore, {
    setTag: async (repository: string, tag: string, digest: BlobDigest): Promise<void> => {
      if (fail) {
        throw new Error('disk full');
      }
      return inner.setTag(repository, tag, digest);
    },
  });
  const store = new ImmutableTagsRepositoryStore(
    flaky,
    [{ repository: '*', tag: 'v*' }],
    new RedisTagClaims(redis),
  );
  await expect(store.setTag('team/app', 'v2', d(1))).rejects.toThrow('disk full');
  fail = false;
  await store.setTag('team/app', 'v2', d(2));
  expect(await store.getTag('team/app', 'v2')).toBe(d(2));
});
