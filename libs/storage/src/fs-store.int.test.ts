import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FsBlobStore } from './fs-blob-store';
import { FsRepositoryStore } from './fs-repository-store';
import { describeStorageContract } from './store.contract';

describeStorageContract(
  'fs',
  async () => {
    const root = await mkdtemp(join(tmpdir(), 'stratum-fs-store-'));
    const blobs = new FsBlobStore(root);
    await blobs.init();
    return {
      blobs,
      repositories: new FsRepositoryStore(root),
      tempEntries: async () => readdir(join(root, 'tmp')).catch(() => []),
      dispose: () => rm(root, { recursive: true, force: true }),
    };
  },
  { largeBytes: 20 * 1024 * 1024, assertStreaming: true },
);

describe('FsBlobStore layout', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'stratum-fs-layout-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('stores blobs at blobs/sha256/<2 hex>/<hex>', async () => {
    const store = new FsBlobStore(root);
    const { digest } = await store.put(Readable.from([Buffer.from('layout')]));
    const hex = digest.slice('sha256:'.length);
    const s = await stat(join(root, 'blobs', 'sha256', hex.slice(0, 2), hex));
    expect(s.size).toBe(6);
    expect(store.pathOf(digest)).toBe(join(root, 'blobs', 'sha256', hex.slice(0, 2), hex));
  });

  it('keeps repository metadata under repositories/ and nothing escapes the root', async () => {
    const repos = new FsRepositoryStore(join(root, 'store'));
    await repos.setTag('ns/app', 'v1', `sha256:${'a'.repeat(64)}`);
    await stat(join(root, 'store', 'repositories', 'ns', 'app', '_tags', 'v1'));
    await expect(repos.setTag('../escape', 'v1', `sha256:${'a'.repeat(64)}`)).rejects.toMatchObject({
      code: 'NAME_INVALID',
    });
    expect((await readdir(root)).sort()).toEqual(['store']);
  });

  it('sweeps stale temp files but not fresh ones', async () => {
    const store = new FsBlobStore(root);
    await store.init();
    await writeFile(join(root, 'tmp', 'stale'), 'x');
    await writeFile(join(root, 'tmp', 'fresh'), 'y');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(join(root, 'tmp', 'stale'), old, old);
    expect(await store.sweepTemp(3600_000)).toBe(1);
    expect(await readdir(join(root, 'tmp'))).toEqual(['fresh']);
  });
});
