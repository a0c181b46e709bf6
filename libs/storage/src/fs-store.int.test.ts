import { mkdtemp, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FsBlobStore } from './fs-blob-store';
import { FsRepositoryStore } from './fs-repository-store';
import { isStorageError } from './storage-error';
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
      tamper: (digest, bytes) => writeFile(blobs.pathOf(digest), bytes),
      quarantineEntries: async () => readdir(join(root, 'quarantine')).catch(() => []),
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

describe('FsBlobStore integrity on serve', () => {
  let root: string;
  let store: FsBlobStore;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'stratum-fs-integrity-'));
    store = new FsBlobStore(root);
    await store.init();
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function readAll(stream: Readable): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of stream) {
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  }

  async function codeOf(p: Promise<unknown>): Promise<string> {
    try {
      await p;
      return 'resolved';
    } catch (err) {
      return isStorageError(err) ? err.code : String(err);
    }
  }

  const recordPath = (hex: string) => join(root, 'verified', 'sha256', hex.slice(0, 2), hex);

  it('refuses a blob rewritten in place with its mtime put back, before a byte is read, and quarantines it', async () => {
    const data = Buffer.from('the original layer bytes '.repeat(100));
    const { digest } = await store.put(Readable.from([data]));
    expect((await readAll(await store.get(digest))).equals(data)).toBe(true);
    const path = store.pathOf(digest);
    const before = await stat(path);
    const evil = Buffer.from(data);
    evil.write('EVIL', 10);
    await writeFile(path, evil);
    await utimes(path, before.atime, before.mtime); // size and mtime as before; ctime moved
    expect(await codeOf(store.get(digest))).toBe('BLOB_CORRUPT');
    expect(await codeOf(store.get(digest, { start: 0, end: 3 }))).toBe('BLOB_UNKNOWN');
    const quarantined = await readdir(join(root, 'quarantine'));
    expect(quarantined).toHaveLength(1);
    expect((await readFile(join(root, 'quarantine', quarantined[0]))).equals(evil)).toBe(true);
    expect(await store.has(digest)).toBe(false);
  });

  it('refuses a blob replaced by rename, and a ranged read of it', async () => {
    const data = Buffer.from('range me '.repeat(50));
    const { digest } = await store.put(Readable.from([data]));
    const evil = Buffer.from(data);
    evil[0] = 0x21;
    await writeFile(join(root, 'evil'), evil);
    await rename(join(root, 'evil'), store.pathOf(digest));
    expect(await codeOf(store.get(digest, { start: 5, end: 9 }))).toBe('BLOB_CORRUPT');
    expect(await readdir(join(root, 'quarantine'))).toHaveLength(1);
  });

  it('re-hashes a blob with no record (written before records existed) once, serves it and records it', async () => {
    const data = Buffer.from('older blob');
    const { digest } = await store.put(Readable.from([data]));
    const hex = digest.slice('sha256:'.length);
    const recorded = await readFile(recordPath(hex), 'utf8');
    await unlink(recordPath(hex));
    // Another process (the one that wrote it remembers it in memory), as after an upgrade.
    store = new FsBlobStore(root);
    expect((await readAll(await store.get(digest))).equals(data)).toBe(true);
    expect(await readFile(recordPath(hex), 'utf8')).toBe(recorded);
    // A touched but unchanged file (a backup tool resetting times) is re-hashed and kept.
    await utimes(store.pathOf(digest), new Date(0), new Date(0));
    expect((await readAll(await store.get(digest, { start: 0, end: 4 }))).toString()).toBe('older');
    expect(await readFile(recordPath(hex), 'utf8')).not.toBe(recorded);
    await expect(readdir(join(root, 'quarantine'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('does not trust an empty record (records are not fsynced: a crash may leave one empty)', async () => {
    const data = Buffer.from('record lost in a crash');
    const { digest } = await store.put(Readable.from([data]));
    const hex = digest.slice('sha256:'.length);
    const recorded = await readFile(recordPath(hex), 'utf8');
    await writeFile(recordPath(hex), '');
    // the blob's bytes changed too (same size): an empty record must send the read to a re-hash
    const path = store.pathOf(digest);
    const evil = Buffer.from(data);
    evil.write('EVIL', 0);
    await writeFile(path, evil);
    store = new FsBlobStore(root); // a restarted process: nothing remembered in memory
    expect(await codeOf(store.get(digest))).toBe('BLOB_CORRUPT');
    // an intact blob behind an empty record is re-hashed, served, and recorded again
    const good = Buffer.from('intact behind an empty record');
    const put = await store.put(Readable.from([good]));
    const goodHex = put.digest.slice('sha256:'.length);
    const goodRecord = await readFile(recordPath(goodHex), 'utf8');
    await writeFile(recordPath(goodHex), '');
    store = new FsBlobStore(root);
    expect((await readAll(await store.get(put.digest))).equals(good)).toBe(true);
    expect(await readFile(recordPath(goodHex), 'utf8')).toBe(goodRecord);
    expect(recorded).not.toBe('');
  });

  it('serves a recorded blob without re-hashing it (a stale record with the same identity is trusted)', async () => {
    // Proves the fast path reads only the record: a record forged to match a tampered file would
    // be trusted, which is why fsck re-hashes regardless (see the contract tests).
    const data = Buffer.from('fast path');
    const { digest } = await store.put(Readable.from([data]));
    const hex = digest.slice('sha256:'.length);
    const path = store.pathOf(digest);
    await writeFile(path, 'FAST PATH');
    const s = await stat(path, { bigint: true });
    await writeFile(recordPath(hex), `${s.ino} ${s.size} ${s.mtimeNs} ${s.ctimeNs}`);
    expect((await readAll(await store.get(digest))).toString()).toBe('FAST PATH');
    expect(await store.verify(digest)).toMatchObject({ status: 'quarantined' });
  });
});
