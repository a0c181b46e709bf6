import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { compressLayer, LayerCache, LayerError, mountOverlay, unmountOverlay } from '.';
import { buildTar, busyboxTar, collect, fileStream, sha256, streamOf, tempDir } from '../test-support/tree';

jest.setTimeout(60_000);

let scratch: string;
beforeAll(async () => {
  scratch = await tempDir();
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function gzipped(tar: Buffer): Promise<Buffer> {
  const layer = compressLayer(streamOf(tar), { compression: 'gzip' });
  const [blob] = await Promise.all([collect(layer.stream), layer.done]);
  return blob;
}

function tarOf(name: string, size: number): Buffer {
  return buildTar([
    { path: `${name}/`, type: 'dir' },
    { path: `${name}/data`, content: Buffer.alloc(size, name) },
  ]);
}

describe('LayerCache', () => {
  it('extracts once under concurrent ensure calls, verifying the diffID', async () => {
    const cache = new LayerCache(join(scratch, 'c1'));
    const tarPath = await busyboxTar(scratch);
    const diffId = sha256(await readFile(tarPath));
    let opened = 0;
    const open = async (): Promise<Readable> => {
      opened++;
      return fileStream(tarPath);
    };
    const results = await Promise.all([
      cache.ensure(diffId, open),
      cache.ensure(diffId, open),
      cache.ensure(diffId, open),
    ]);
    expect(opened).toBe(1);
    expect(new Set(results.map((r) => r.path)).size).toBe(1);
    expect((await stat(join(results[0].path, 'bin/busybox'))).isFile()).toBe(true);
    expect(results[0].size).toBeGreaterThan(500_000);
    await cache.ensure(diffId, open);
    expect(opened).toBe(1);
    expect(await readdir(join(scratch, 'c1', 'tmp'))).toEqual([]);
  });

  it('rejects content that does not match the diffID and keeps nothing', async () => {
    const root = join(scratch, 'c2');
    const cache = new LayerCache(root);
    const wrong = `sha256:${'a'.repeat(64)}`;
    const err = await cache.ensure(wrong, async () => streamOf(tarOf('x', 10))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayerError);
    expect(err).toMatchObject({ code: 'LAYER_DIGEST_MISMATCH' });
    expect(await cache.get(wrong)).toBeUndefined();
    expect(await readdir(join(root, 'layers'))).toEqual([]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    await expect(cache.ensure('sha256:nothex', async () => streamOf(Buffer.alloc(0)))).rejects.toMatchObject({
      code: 'LAYER_INVALID_ARGUMENT',
    });
  });

  it('leases give overlay lowerdirs (topmost first) with whiteouts in overlay form', async () => {
    const root = join(scratch, 'c3');
    const cache = new LayerCache(root);
    const base = buildTar([
      { path: 'etc/', type: 'dir' },
      { path: 'etc/a', content: 'a' },
      { path: 'etc/b', content: 'b' },
      { path: 'opt/', type: 'dir' },
      { path: 'opt/old', content: 'old' },
    ]);
    const top = buildTar([
      { path: 'etc/.wh.a' },
      { path: 'opt/', type: 'dir' },
      { path: 'opt/.wh..wh..opq' },
      { path: 'opt/new', content: 'new' },
    ]);
    const ids = [sha256(base), sha256(top)];
    await cache.ensure(ids[0], async () => streamOf(await gzipped(base)));
    await cache.ensure(ids[1], async () => streamOf(top));
    const lease = await cache.acquire(ids);
    expect(lease.lowerDirs).toEqual([(await cache.get(ids[1]))?.path, (await cache.get(ids[0]))?.path]);
    const m = join(scratch, 'c3mount');
    const target = join(m, 'merged');
    await mountOverlay({
      lowerDirs: [...lease.lowerDirs],
      upperDir: join(m, 'upper'),
      workDir: join(m, 'work'),
      target,
    });
    try {
      expect((await readdir(join(target, 'etc'))).sort()).toEqual(['b']);
      expect(await readdir(join(target, 'opt'))).toEqual(['new']);
    } finally {
      await unmountOverlay(target);
      cache.release(lease);
    }
  });

  it('evicts least recently used, unpinned layers down to maxBytes and persists its index', async () => {
    const root = join(scratch, 'c4');
    const cache = new LayerCache(root);
    const tars = ['a', 'b', 'c', 'd'].map((name) => tarOf(name, 1000));
    const ids = tars.map(sha256);
    for (const [i, tar] of tars.entries()) {
      await cache.ensure(ids[i], async () => streamOf(tar));
    }
    expect(cache.totalBytes()).toBe(4000);
    // use order now: b (pinned), a, c, d oldest->newest except pinned
    const pinned = await cache.acquire([ids[1]]);
    cache.release(await cache.acquire([ids[0]]));
    cache.release(await cache.acquire([ids[2]]));
    cache.release(await cache.acquire([ids[3]]));

    const first = await cache.evict({ maxBytes: 2500 });
    expect(first.evicted).toEqual([ids[0], ids[2]]);
    expect(first).toMatchObject({ freedBytes: 2000, totalBytes: 2000 });
    expect(await cache.get(ids[0])).toBeUndefined();
    await expect(cache.acquire([ids[0]])).rejects.toMatchObject({ code: 'LAYER_NOT_CACHED' });

    const second = await cache.evict({ maxBytes: 0 });
    expect(second.evicted).toEqual([ids[3]]); // b is pinned
    cache.release(pinned);
    cache.release(pinned); // idempotent

    const reopened = new LayerCache(root);
    expect(await reopened.get(ids[1])).toMatchObject({ diffId: ids[1], size: 1000 });
    expect(reopened.totalBytes()).toBe(1000);
    expect((await reopened.evict({ maxBytes: 0 })).evicted).toEqual([ids[1]]);
    expect(await readdir(join(root, 'layers'))).toEqual([]);
    expect(await readdir(join(root, 'meta'))).toEqual([]);
  });

  it("writes a leased layer's last use only when the stored one is a minute old; a reopened cache sees it", async () => {
    const root = join(scratch, 'c5');
    const cache = new LayerCache(root);
    const id = sha256(tarOf('x', 10));
    await cache.ensure(id, async () => streamOf(tarOf('x', 10)));
    const meta = join(root, 'meta', `${id.slice('sha256:'.length)}.json`);
    const written = await readFile(meta, 'utf8');
    const inode = (await stat(meta)).ino;
    const t0 = Date.now();
    const clock = jest.spyOn(Date, 'now');
    try {
      clock.mockReturnValue(t0 + 30_000);
      cache.release(await cache.acquire([id]));
      expect((await stat(meta)).ino).toBe(inode); // not rewritten: 30 s stale only
      expect(await readFile(meta, 'utf8')).toBe(written);
      clock.mockReturnValue(t0 + 61_000);
      cache.release(await cache.acquire([id]));
    } finally {
      clock.mockRestore();
    }
    const stored = JSON.parse(await readFile(meta, 'utf8')) as { lastUsed: number };
    expect(stored.lastUsed).toBe(t0 + 61_000);
    const reopened = new LayerCache(root);
    expect(await reopened.get(id)).toMatchObject({ diffId: id });
  });
});
