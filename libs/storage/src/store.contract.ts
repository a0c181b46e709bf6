import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { BlobDigest, BlobStore } from './blob-store';
import { RepositoryStore } from './repository-store';
import { StorageError, StorageErrorCode } from './storage-error';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * The one contract both storage backends must pass (CONVENTIONS.md §9). Each backend's
 * integration test calls {@link describeStorageContract} with a factory for a fresh, empty store.
 */
export interface StorageHarness {
  readonly blobs: BlobStore;
  readonly repositories: RepositoryStore;
  /** Leftover upload temp entries (files under tmp/, objects under tmp/). */
  tempEntries(): Promise<string[]>;
  /** Replaces a stored blob's bytes behind the store's back (what a hostile step or bit rot does). */
  tamper(digest: BlobDigest, bytes: Buffer): Promise<void>;
  /** Entries moved to quarantine (files under quarantine/, objects under quarantine/). */
  quarantineEntries(): Promise<string[]>;
  /** Releases the store and everything it wrote. */
  dispose(): Promise<void>;
}

export interface ContractOptions {
  /** Size of the streamed "large" blob. */
  readonly largeBytes: number;
  /** When true, asserts that uploading the large blob never holds anywhere near all of it in memory. */
  readonly assertStreaming: boolean;
}

function sha(buf: Buffer): BlobDigest {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) {
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

function chunked(buf: Buffer, size = 1000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) {
    parts.push(buf.subarray(i, i + size));
  }
  return Readable.from(parts, { objectMode: false });
}

async function expectCode(p: Promise<unknown>, code: StorageErrorCode): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(StorageError);
  await expect(p).rejects.toMatchObject({ code });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) {
    out.push(x);
  }
  return out;
}

/** Deterministic pseudo-random chunks, generated lazily: the test itself never holds the whole blob. */
function* lazyChunks(total: number, chunkSize: number, seed: number): Generator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let done = 0; done < total; done += chunkSize) {
    const n = Math.min(chunkSize, total - done);
    const b = Buffer.alloc(n);
    for (let i = 0; i + 4 <= n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b.writeUInt32LE(x >>> 0, i);
    }
    yield b;
  }
}

function lazyDigest(total: number, chunkSize: number, seed: number): BlobDigest {
  const h = createHash('sha256');
  for (const c of lazyChunks(total, chunkSize, seed)) {
    h.update(c);
  }
  return `sha256:${h.digest('hex')}`;
}

export function describeStorageContract(
  backend: string,
  factory: () => Promise<StorageHarness>,
  options: ContractOptions,
): void {
  describe(`storage contract: ${backend}`, () => {
    let h: StorageHarness;
    let blobs: BlobStore;
    let repos: RepositoryStore;

    beforeEach(async () => {
      h = await factory();
      blobs = h.blobs;
      repos = h.repositories;
    });
    afterEach(async () => {
      await h.dispose();
    });

    describe('blobs', () => {
      it('puts, stats, gets, lists and deletes a blob', async () => {
        const data = randomBytes(10_000);
        const digest = sha(data);
        expect(await blobs.has(digest)).toBe(false);
        expect(await blobs.stat(digest)).toEqual({ exists: false });

        const res = await blobs.put(chunked(data), { expectedDigest: digest, expectedSize: data.length });
        expect(res).toEqual({ digest, size: data.length, created: true });
        expect(await blobs.has(digest)).toBe(true);
        const stat = await blobs.stat(digest);
        expect(stat).toMatchObject({ exists: true, size: data.length });
        // modifiedAt (garbage collection's grace period) is the write time, give or take clock skew.
        const modifiedAt = stat.exists ? stat.modifiedAt : undefined;
        // (not toBeInstanceOf(Date): fs.Stats dates come from Node's realm, not Jest's sandbox)
        expect(typeof modifiedAt?.getTime()).toBe('number');
        expect(Math.abs(Date.now() - (modifiedAt?.getTime() ?? 0))).toBeLessThan(5 * 60_000);
        expect((await readAll(await blobs.get(digest))).equals(data)).toBe(true);
        expect(await collect(blobs.list())).toEqual([digest]);
        expect(await h.tempEntries()).toEqual([]);

        expect(await blobs.delete(digest)).toBe(true);
        expect(await blobs.delete(digest)).toBe(false);
        expect(await blobs.has(digest)).toBe(false);
        await expectCode(blobs.get(digest), 'BLOB_UNKNOWN');
        expect(await collect(blobs.list())).toEqual([]);
      });

      it('computes the digest when none is expected, and stores the empty blob', async () => {
        const empty = await blobs.put(Readable.from([]));
        expect(empty).toEqual({ digest: sha(Buffer.alloc(0)), size: 0, created: true });
        expect((await readAll(await blobs.get(empty.digest))).length).toBe(0);

        const data = Buffer.from('hello stratum');
        const res = await blobs.put(Readable.from([data]));
        expect(res.digest).toBe(sha(data));
        expect((await collect(blobs.list())).sort()).toEqual([empty.digest, res.digest].sort());
      });

      it('serves inclusive byte ranges and refuses unsatisfiable ones', async () => {
        const data = Buffer.from('0123456789abcdefghij');
        const { digest } = await blobs.put(Readable.from([data]));
        const range = async (start: number, end: number) =>
          (await readAll(await blobs.get(digest, { start, end }))).toString();
        expect(await range(0, 0)).toBe('0');
        expect(await range(3, 7)).toBe('34567');
        expect(await range(10, 19)).toBe('abcdefghij');
        expect(await range(15, 1000)).toBe('fghij'); // end past the blob is clamped, as in HTTP
        await expectCode(blobs.get(digest, { start: 20, end: 25 }), 'RANGE_INVALID');
        await expectCode(blobs.get(digest, { start: 5, end: 4 }), 'RANGE_INVALID');
        await expectCode(blobs.get(digest, { start: -1, end: 4 }), 'RANGE_INVALID');
        await expectCode(blobs.get(sha(Buffer.from('absent')), { start: 0, end: 1 }), 'BLOB_UNKNOWN');
      });

      it('rejects a wrong digest with DIGEST_INVALID and leaves nothing behind', async () => {
        const data = randomBytes(5000);
        const wrong = sha(Buffer.from('something else'));
        await expectCode(blobs.put(chunked(data), { expectedDigest: wrong }), 'DIGEST_INVALID');
        expect(await blobs.has(wrong)).toBe(false);
        expect(await blobs.has(sha(data))).toBe(false);
        expect(await collect(blobs.list())).toEqual([]);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('rejects a wrong size, short or long, with SIZE_INVALID', async () => {
        const data = randomBytes(3000);
        await expectCode(blobs.put(chunked(data), { expectedSize: 2999 }), 'SIZE_INVALID');
        await expectCode(blobs.put(chunked(data), { expectedSize: 3001 }), 'SIZE_INVALID');
        expect(await collect(blobs.list())).toEqual([]);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('aborts as soon as maxBytes is exceeded and destroys the input', async () => {
        let produced = 0;
        // An endless source: the put can only finish by giving up early.
        const source = new Readable({
          read() {
            produced += 1024;
            this.push(Buffer.alloc(1024, 7));
          },
        });
        await expectCode(blobs.put(source, { maxBytes: 64 * 1024 }), 'BLOB_TOO_LARGE');
        expect(source.destroyed).toBe(true);
        expect(produced).toBeLessThan(1024 * 1024);
        expect(await collect(blobs.list())).toEqual([]);
        expect(await h.tempEntries()).toEqual([]);

        // At exactly the limit it succeeds.
        const ok = await blobs.put(Readable.from([Buffer.alloc(100)]), { maxBytes: 100 });
        expect(ok.size).toBe(100);
      });

      it('a source failing before the store reads from it is a rejected put, not a crash', async () => {
        const source = new Readable({ read() {} });
        const put = blobs.put(source);
        // fails while put is still preparing (temp file, multipart upload)
        process.nextTick(() => source.destroy(new Error('gone before the first read')));
        await expect(put).rejects.toThrow('gone before the first read');
        expect(await collect(blobs.list())).toEqual([]);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('propagates a failing source and cleans up', async () => {
        const source = new Readable({ read() {} });
        source.push(Buffer.alloc(2048, 1));
        setTimeout(() => source.destroy(new Error('client went away')), 20);
        await expect(blobs.put(source)).rejects.toThrow('client went away');
        expect(await collect(blobs.list())).toEqual([]);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('stores the same blob once (created false the second time)', async () => {
        const data = randomBytes(4096);
        const first = await blobs.put(chunked(data));
        const second = await blobs.put(chunked(data), { expectedDigest: first.digest });
        expect(first.created).toBe(true);
        expect(second).toEqual({ digest: first.digest, size: data.length, created: false });
        expect(await collect(blobs.list())).toEqual([first.digest]);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('handles concurrent puts of the same blob', async () => {
        const data = randomBytes(200_000);
        const results = await Promise.all(
          Array.from({ length: 6 }, () => blobs.put(chunked(data, 8192), { expectedDigest: sha(data) })),
        );
        for (const r of results) {
          expect(r.digest).toBe(sha(data));
          expect(r.size).toBe(data.length);
        }
        expect(results.filter((r) => r.created).length).toBeGreaterThanOrEqual(1);
        expect(await collect(blobs.list())).toEqual([sha(data)]);
        expect((await readAll(await blobs.get(sha(data)))).equals(data)).toBe(true);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('rejects malformed digests with DIGEST_INVALID', async () => {
        const bad = ['sha256:abc', 'md5:' + 'a'.repeat(32), 'sha256:' + 'A'.repeat(64), '../../etc/passwd'];
        for (const d of bad) {
          await expectCode(blobs.stat(d as BlobDigest), 'DIGEST_INVALID');
          await expectCode(blobs.get(d as BlobDigest), 'DIGEST_INVALID');
          await expectCode(blobs.delete(d as BlobDigest), 'DIGEST_INVALID');
          await expectCode(
            blobs.put(Readable.from([]), { expectedDigest: d as BlobDigest }),
            'DIGEST_INVALID',
          );
        }
      });

      it(`streams a ${options.largeBytes / (1024 * 1024)} MiB blob in and out without buffering it whole`, async () => {
        const total = options.largeBytes;
        const chunkSize = 64 * 1024;
        const digest = lazyDigest(total, chunkSize, 42);
        // Count live buffers only: collect garbage before each sample, or chunks already written
        // but not yet collected look like buffering (this failed under load without it).
        const gc = liveGc();
        gc();
        const baseline = process.memoryUsage().arrayBuffers;
        let peak = baseline;
        let produced = 0;
        const source = Readable.from(
          (function* () {
            for (const c of lazyChunks(total, chunkSize, 42)) {
              if (++produced % 16 === 0) {
                gc();
                peak = Math.max(peak, process.memoryUsage().arrayBuffers);
              }
              yield c;
            }
          })(),
          { objectMode: false },
        );
        const res = await blobs.put(source, { expectedDigest: digest, expectedSize: total });
        expect(res).toEqual({ digest, size: total, created: true });
        if (options.assertStreaming) {
          expect(peak - baseline).toBeLessThan(total / 2);
        }

        const h2 = createHash('sha256');
        let n = 0;
        for await (const c of await blobs.get(digest)) {
          h2.update(c as Buffer);
          n += (c as Buffer).length;
        }
        expect(n).toBe(total);
        expect(`sha256:${h2.digest('hex')}`).toBe(digest);
        const tail = await readAll(await blobs.get(digest, { start: total - 10, end: total - 1 }));
        expect(tail.length).toBe(10);
      }, 60_000);
    });

    describe('verify and quarantine', () => {
      it('verifies an intact blob, and reports a missing one', async () => {
        const data = randomBytes(5000);
        const { digest } = await blobs.put(chunked(data));
        expect(await blobs.verify(digest)).toEqual({ status: 'ok', size: data.length });
        expect(await blobs.verify(sha(Buffer.from('never stored')))).toEqual({ status: 'missing' });
        expect(await h.quarantineEntries()).toEqual([]);
        expect((await readAll(await blobs.get(digest))).equals(data)).toBe(true);
      });

      it('quarantines a tampered blob: no longer listed, stat-able, or served', async () => {
        const data = randomBytes(5000);
        const other = Buffer.from('kept intact');
        const { digest } = await blobs.put(chunked(data));
        const { digest: otherDigest } = await blobs.put(chunked(other));
        const evil = Buffer.from(data);
        evil[1234] ^= 0xff; // same size, one byte different
        await h.tamper(digest, evil);

        expect(await blobs.verify(digest)).toEqual({
          status: 'quarantined',
          size: evil.length,
          actual: sha(evil),
        });
        expect(await blobs.has(digest)).toBe(false);
        expect(await collect(blobs.list())).toEqual([otherDigest]);
        await expectCode(blobs.get(digest), 'BLOB_UNKNOWN');
        expect(await h.quarantineEntries()).toHaveLength(1);
        expect(await blobs.verify(digest)).toEqual({ status: 'missing' });
        expect(await blobs.verify(otherDigest)).toEqual({ status: 'ok', size: other.length });

        // The right bytes can be stored again under the digest.
        expect(await blobs.put(chunked(data), { expectedDigest: digest })).toMatchObject({ created: true });
        expect((await readAll(await blobs.get(digest))).equals(data)).toBe(true);
        expect(await blobs.verify(digest)).toEqual({ status: 'ok', size: data.length });
      });
    });

    describe('repositories', () => {
      const d1 = sha(Buffer.from('manifest one'));
      const d2 = sha(Buffer.from('manifest two'));

      it('sets, gets, lists, moves and deletes tags', async () => {
        expect(await repos.getTag('library/alpine', 'latest')).toBeNull();
        expect(await repos.listTags('library/alpine')).toEqual([]);
        await repos.setTag('library/alpine', 'latest', d1);
        await repos.setTag('library/alpine', '3.20', d1);
        await repos.setTag('library/alpine', 'Edge_1.0-rc', d2);
        expect(await repos.getTag('library/alpine', 'latest')).toBe(d1);
        expect(await repos.listTags('library/alpine')).toEqual(['3.20', 'Edge_1.0-rc', 'latest']);

        await repos.setTag('library/alpine', 'latest', d2);
        expect(await repos.getTag('library/alpine', 'latest')).toBe(d2);

        expect(await repos.deleteTag('library/alpine', 'latest')).toBe(true);
        expect(await repos.deleteTag('library/alpine', 'latest')).toBe(false);
        expect(await repos.getTag('library/alpine', 'latest')).toBeNull();
        expect(await repos.listTags('library/alpine')).toEqual(['3.20', 'Edge_1.0-rc']);
        expect(await h.tempEntries()).toEqual([]);
      });

      it('lists repositories, nested ones included, sorted', async () => {
        expect(await repos.listRepositories()).toEqual([]);
        await repos.setTag('team/app', 'v1', d1);
        await repos.setTag('team', 'v1', d1);
        await repos.linkManifest('a.b/c-d/e__f', d1);
        await repos.linkBlob('zeta', d2);
        expect(await repos.listRepositories()).toEqual(['a.b/c-d/e__f', 'team', 'team/app', 'zeta']);
        expect(await repos.hasRepository('team/app')).toBe(true);
        expect(await repos.hasRepository('team/other')).toBe(false);
        // A repository's tags do not leak into a nested one and vice versa.
        expect(await repos.listTags('team')).toEqual(['v1']);
        expect(await repos.getTag('team/app', 'v1')).toBe(d1);
      });

      it('links, lists and unlinks manifests and blobs per repository', async () => {
        await repos.linkManifest('r', d2);
        await repos.linkManifest('r', d1);
        await repos.linkManifest('r', d1);
        expect(await repos.hasManifest('r', d1)).toBe(true);
        expect(await repos.hasManifest('other', d1)).toBe(false);
        expect(await repos.listManifests('r')).toEqual([d1, d2].sort());
        expect(await repos.unlinkManifest('r', d1)).toBe(true);
        expect(await repos.unlinkManifest('r', d1)).toBe(false);
        expect(await repos.listManifests('r')).toEqual([d2]);
        expect(await repos.listManifests('nothing/here')).toEqual([]);

        expect(await repos.hasBlob('r', d1)).toBe(false);
        await repos.linkBlob('r', d1);
        expect(await repos.hasBlob('r', d1)).toBe(true);
        expect(await repos.hasBlob('r/sub', d1)).toBe(false);
        expect(await repos.unlinkBlob('r', d1)).toBe(true);
        expect(await repos.hasBlob('r', d1)).toBe(false);
      });

      it('rejects bad repository names, tags and digests', async () => {
        const badNames = [
          '',
          'A',
          'Library/alpine',
          '../x',
          'a/../b',
          'a//b',
          '/a',
          'a/',
          '.',
          'a/.',
          '_tags',
          'a/_tags',
          'a..b',
          'a_-b',
          '-a',
          'a b',
          'a\\b',
          'a'.repeat(256),
        ];
        for (const name of badNames) {
          await expectCode(repos.setTag(name, 'latest', d1), 'NAME_INVALID');
          await expectCode(repos.getTag(name, 'latest'), 'NAME_INVALID');
          await expectCode(repos.listTags(name), 'NAME_INVALID');
          await expectCode(repos.linkManifest(name, d1), 'NAME_INVALID');
          await expectCode(repos.linkBlob(name, d1), 'NAME_INVALID');
          await expectCode(repos.hasBlob(name, d1), 'NAME_INVALID');
        }
        const badTags = ['', '.hidden', '-x', 'a/b', '../x', 'a:b', 'x'.repeat(129)];
        for (const tag of badTags) {
          await expectCode(repos.setTag('ok', tag, d1), 'TAG_INVALID');
          await expectCode(repos.getTag('ok', tag), 'TAG_INVALID');
          await expectCode(repos.deleteTag('ok', tag), 'TAG_INVALID');
        }
        await expectCode(repos.setTag('ok', 'latest', 'sha256:nope'), 'DIGEST_INVALID');
        await expectCode(repos.linkManifest('ok', 'sha256:../../x'), 'DIGEST_INVALID');
        expect(await repos.listRepositories()).toEqual([]);
        // The longest valid tag and a long valid name are accepted.
        await repos.setTag('a'.repeat(255), 'x'.repeat(128), d1);
        expect(await repos.getTag('a'.repeat(255), 'x'.repeat(128))).toBe(d1);
      });
    });
  });
}

/** V8's gc(), made callable at run time (jest runs without --expose-gc). */
function liveGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
