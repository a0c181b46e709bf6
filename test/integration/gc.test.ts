import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { cacheRecordKey } from '@stratum/engine';
import { RedisKeys } from '@stratum/jobs';
import { BlobDigest, FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { GarbageCollector } from '../../apps/api/src/maintenance/garbage-collector';
import { applyRetention } from '../../apps/api/src/maintenance/retention';

jest.setTimeout(30_000);

const HOUR = 3600_000;
const GRACE = HOUR;

let redisServer: RedisServerHandle;
let redis: Redis;
let root: string;
let blobs: FsBlobStore;
let repos: FsRepositoryStore;

/** Stores bytes as a blob written `ageMs` ago (its mtime is set back). */
async function putBlob(bytes: Buffer, ageMs: number): Promise<BlobDigest> {
  const { digest } = await blobs.put(Readable.from([bytes]));
  const t = new Date(Date.now() - ageMs);
  utimesSync(blobs.pathOf(digest), t, t);
  return digest;
}

/** An OCI image manifest naming a config and layers, stored `ageMs` ago. */
async function putManifest(config: BlobDigest, layers: BlobDigest[], ageMs: number): Promise<BlobDigest> {
  const desc = (mediaType: string, digest: BlobDigest) => ({ mediaType, digest, size: 10 });
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: desc('application/vnd.oci.image.config.v1+json', config),
    layers: layers.map((l) => desc('application/vnd.oci.image.layer.v1.tar+gzip', l)),
  };
  return putBlob(Buffer.from(JSON.stringify(manifest)), ageMs);
}

const old = (): Promise<BlobDigest> => putBlob(randomBytes(64), 2 * HOUR);

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
});

afterAll(async () => {
  redis.disconnect();
  await redisServer.stop();
});

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'stratum-gc-'));
  blobs = new FsBlobStore(root);
  await blobs.init();
  repos = new FsRepositoryStore(root);
  await redis.flushall();
});

afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('garbage collection (fs store, real Redis)', () => {
  it('keeps what manifests, tags, build cache and build records reference; deletes old unreferenced blobs only', async () => {
    // An image tagged in a repository.
    const layer = await old();
    const config = await old();
    const manifest = await putManifest(config, [layer], 2 * HOUR);
    await repos.linkBlob('app', layer);
    await repos.linkBlob('app', config);
    await repos.linkManifest('app', manifest);
    await repos.setTag('app', 'v1', manifest);
    // A layer only the build cache names.
    const cached = await old();
    await redis.set(
      cacheRecordKey('a'.repeat(64)),
      JSON.stringify({
        version: 1,
        layer: {
          digest: cached,
          diffId: cached,
          size: 64,
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        },
        history: { created_by: 'RUN x' },
        recordedAt: new Date().toISOString(),
      }),
    );
    // A build context only a build record names (a queued build, or one a retry may reuse).
    const context = await old();
    const buildId = randomUUID();
    await redis.set(
      RedisKeys.build(buildId),
      JSON.stringify({ id: buildId, contextDigest: context, imageDigest: null }),
    );
    // Garbage: an old blob nothing names, and one whose manifest's repository link is gone.
    const orphan = await old();
    const young = await putBlob(randomBytes(64), 5 * 60_000);
    // An old blob nobody references at mark time, which a manifest pushed during the run names.
    const adopted = await old();
    let duringRun: BlobDigest | null = null;

    const result = await new GarbageCollector(blobs, repos, redis).run({
      graceMs: GRACE,
      afterMark: async () => {
        // Written while GC runs: young, so never deleted even though nothing references it.
        duringRun = await blobs.put(Readable.from([randomBytes(64)])).then((r) => r.digest);
        // A push during the run: the re-check right before deleting must see it.
        const m = await putManifest(adopted, [], 0);
        await repos.linkBlob('other', adopted);
        await repos.linkManifest('other', m);
      },
    });

    expect(result.deleted).toEqual([orphan]);
    expect(result.freed).toEqual({ blobs: 1, bytes: 64 });
    expect(result.stats.rescued).toBe(1);
    expect(result.stats.young).toBeGreaterThanOrEqual(2);
    expect(await blobs.has(orphan)).toBe(false);
    for (const kept of [
      layer,
      config,
      manifest,
      cached,
      context,
      young,
      adopted,
      duringRun as unknown as BlobDigest,
    ]) {
      expect(await blobs.has(kept)).toBe(true);
    }
  });

  it('walks an index to its child manifests, and leaves blobs of a backend without dates alone', async () => {
    const layer = await old();
    const config = await old();
    const child = await putManifest(config, [layer], 2 * HOUR);
    const index = await putBlob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: child, size: 10 }],
        }),
      ),
      2 * HOUR,
    );
    await repos.linkManifest('multi', index);
    await repos.setTag('multi', 'latest', index);
    const result = await new GarbageCollector(blobs, repos, redis).run({ graceMs: GRACE });
    expect(result.freed.blobs).toBe(0);
    for (const d of [layer, config, child, index]) {
      expect(await blobs.has(d)).toBe(true);
    }

    // A store whose stat has no modifiedAt (an unknown age): nothing is deleted.
    const orphan = await old();
    const undated = Object.create(blobs) as FsBlobStore;
    undated.stat = async (d) => {
      const s = await blobs.stat(d);
      return s.exists ? { exists: true, size: s.size } : s;
    };
    const r2 = await new GarbageCollector(undated, repos, redis).run({ graceMs: GRACE });
    expect(r2.freed.blobs).toBe(0);
    expect(r2.stats.unknownAge).toBe(1);
    expect(await blobs.has(orphan)).toBe(true);
  });

  it('retention keeps the newest tags and unlinks old untagged manifests; GC then reclaims their blobs', async () => {
    const images: { manifest: BlobDigest; layer: BlobDigest }[] = [];
    for (let i = 0; i < 3; i++) {
      const layer = await old();
      const config = await old();
      // Older images first: v0 is the oldest.
      const manifest = await putManifest(config, [layer], (10 - i) * 24 * HOUR);
      await repos.linkBlob('app', layer);
      await repos.linkManifest('app', manifest);
      await repos.setTag('app', `v${i}`, manifest);
      images.push({ manifest, layer });
    }
    // An untagged manifest, two days old, and one a tag-less push left an hour ago.
    const untaggedLayer = await old();
    const untagged = await putManifest(await old(), [untaggedLayer], 2 * 24 * HOUR);
    await repos.linkManifest('app', untagged);
    const recent = await putManifest(await old(), [], 2 * HOUR);
    await repos.linkManifest('app', recent);
    // Another repository is not covered by the rule.
    const keepLayer = await old();
    const kept = await putManifest(await old(), [keepLayer], 30 * 24 * HOUR);
    await repos.linkManifest('base/os', kept);

    const r = await applyRetention(blobs, repos, redis, {
      keepTags: 1,
      untaggedDays: 1,
      repositories: ['app'],
    });
    expect(r).toEqual({ tags: 2, manifests: 3 });
    expect(await repos.listTags('app')).toEqual(['v2']);
    expect(await repos.listManifests('app')).toEqual([images[2].manifest, recent].sort());

    const gc = await new GarbageCollector(blobs, repos, redis).run({ graceMs: GRACE });
    expect(await blobs.has(images[0].layer)).toBe(false);
    expect(await blobs.has(untaggedLayer)).toBe(false);
    expect(await blobs.has(images[2].layer)).toBe(true);
    expect(await blobs.has(keepLayer)).toBe(true);
    expect(gc.freed.blobs).toBeGreaterThanOrEqual(9);
  });
});
