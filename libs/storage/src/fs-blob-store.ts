import { FileHandle, link, mkdir, open, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BlobDigest, BlobStat, BlobStore, ByteRange, PutBlobOptions, PutBlobResult } from './blob-store';
import { bufferChunks, BlobVerifier, resolveRange } from './blob-verifier';
import { parseBlobDigest } from './digest';
import { FileSliceStream } from './file-slice-stream';
import { errnoCode, readdirOrEmpty, syncDir, tempPath, unlinkQuietly, wrapFsError } from './fs-util';
import { StorageError } from './storage-error';

const HEX64 = /^[a-f0-9]{64}$/;
const HEX2 = /^[a-f0-9]{2}$/;

/**
 * {@link BlobStore} on a local directory (the embedded default).
 *
 * Layout: `root/blobs/sha256/<first 2 hex>/<hex>`; uploads go to `root/tmp/<uuid>` (same
 * filesystem, so the final step is an atomic link/rename). A blob file at its final path is
 * always complete and verified.
 */
export class FsBlobStore implements BlobStore {
  private readonly blobsDir: string;
  private readonly tmpDir: string;

  constructor(readonly root: string) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.tmpDir = join(root, 'tmp');
  }

  /** Creates the directory layout; safe to call repeatedly. */
  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  /** Final path of a blob (the digest is validated). */
  pathOf(digest: BlobDigest): string {
    const { hex } = parseBlobDigest(digest);
    return join(this.blobsDir, hex.slice(0, 2), hex);
  }

  async stat(digest: BlobDigest): Promise<BlobStat> {
    const path = this.pathOf(digest);
    try {
      const s = await stat(path);
      return { exists: true, size: s.size, modifiedAt: s.mtime };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        return { exists: false };
      }
      throw wrapFsError(err);
    }
  }

  async has(digest: BlobDigest): Promise<boolean> {
    return (await this.stat(digest)).exists;
  }

  async get(digest: BlobDigest, range?: ByteRange): Promise<Readable> {
    const path = this.pathOf(digest);
    let fh: FileHandle;
    try {
      // Open first, then stat the handle: a concurrent delete cannot pull the file from under us.
      fh = await open(path, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new StorageError('BLOB_UNKNOWN', `blob unknown: ${digest}`);
      }
      throw wrapFsError(err);
    }
    try {
      const { size } = await fh.stat();
      const r = resolveRange(size, range);
      // A FileSliceStream: 4 MiB reads (64 KiB made registry pulls far slower than
      // Distribution's), and sendStream() writes it from reused buffers.
      return new FileSliceStream(fh, r?.start ?? 0, r?.end ?? size - 1);
    } catch (err) {
      await fh.close();
      throw wrapFsError(err);
    }
  }

  async put(data: Readable, options: PutBlobOptions = {}): Promise<PutBlobResult> {
    let verifier: BlobVerifier;
    try {
      verifier = new BlobVerifier(options);
    } catch (err) {
      data.destroy();
      throw err;
    }
    let tmp: string | undefined;
    let fh: FileHandle | undefined;
    try {
      tmp = await tempPath(this.tmpDir);
      fh = await open(tmp, 'wx');
      for await (const chunk of bufferChunks(data)) {
        verifier.update(chunk); // throws BLOB_TOO_LARGE / SIZE_INVALID on the first byte too many
        await fh.write(chunk);
      }
      const { digest, size } = verifier.finish();
      await fh.sync();
      await fh.close();
      fh = undefined;
      const created = await this.publish(tmp, digest);
      tmp = undefined;
      return { digest, size, created };
    } catch (err) {
      data.destroy();
      await fh?.close().catch(() => undefined);
      if (tmp !== undefined) {
        await unlinkQuietly(tmp).catch(() => undefined);
      }
      throw wrapFsError(err);
    }
  }

  /**
   * Moves a verified temp file to its final path. `link` fails with EEXIST instead of replacing,
   * so of two concurrent uploads of one blob exactly one reports `created: true`. Falls back to
   * rename where hard links are not supported (same content either way).
   */
  private async publish(tmp: string, digest: BlobDigest): Promise<boolean> {
    const finalPath = this.pathOf(digest);
    const dir = join(finalPath, '..');
    await mkdir(dir, { recursive: true });
    let created: boolean;
    try {
      await link(tmp, finalPath);
      created = true;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') {
        created = false;
      } else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
        const existed = (await this.stat(digest)).exists;
        await rename(tmp, finalPath);
        await syncDir(dir);
        return !existed;
      } else {
        throw err;
      }
    }
    await unlinkQuietly(tmp);
    if (created) {
      await syncDir(dir);
    }
    return created;
  }

  async delete(digest: BlobDigest): Promise<boolean> {
    try {
      return await unlinkQuietly(this.pathOf(digest));
    } catch (err) {
      throw wrapFsError(err);
    }
  }

  /**
   * Deletes upload temp files older than `maxAgeMs` (left by a crashed process). Run at boot;
   * a live upload keeps writing, so a generous age (an hour) never hits one. Returns the count.
   */
  async sweepTemp(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const path = join(this.tmpDir, name);
      try {
        if ((await stat(path)).mtimeMs < cutoff && (await unlinkQuietly(path))) {
          removed++;
        }
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') {
          throw wrapFsError(err);
        }
      }
    }
    return removed;
  }

  async *list(): AsyncIterable<BlobDigest> {
    for (const prefix of (await readdirOrEmpty(this.blobsDir)).sort()) {
      if (!HEX2.test(prefix)) {
        continue;
      }
      for (const name of (await readdirOrEmpty(join(this.blobsDir, prefix))).sort()) {
        if (HEX64.test(name) && name.startsWith(prefix)) {
          yield `sha256:${name}`;
        }
      }
    }
  }
}
