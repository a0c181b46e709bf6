import { createHash } from 'node:crypto';
import { BigIntStats } from 'node:fs';
import { FileHandle, link, mkdir, open, readdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Logger } from '@nestjs/common';
import {
  BlobDigest,
  BlobStat,
  BlobStore,
  BlobVerifyResult,
  ByteRange,
  PutBlobOptions,
  PutBlobResult,
} from './blob-store';
import { bufferChunks, BlobVerifier, resolveRange } from './blob-verifier';
import { parseBlobDigest } from './digest';
import { FileSliceStream } from './file-slice-stream';
import {
  errnoCode,
  readdirOrEmpty,
  syncDir,
  tempPath,
  unlinkQuietly,
  wrapFsError,
  writeFileAtomic,
} from './fs-util';
import { StorageError } from './storage-error';

const HEX64 = /^[a-f0-9]{64}$/;
const HEX2 = /^[a-f0-9]{2}$/;
/** Verified identities kept in memory per process (~200 bytes each): the record file is the truth. */
const KNOWN_MAX = 50_000;
/** Read size of a re-hash: large reads keep a multi-GB layer's re-hash near disk speed. */
const HASH_CHUNK = 4 * 1024 * 1024;

/**
 * The identity of a blob file when its bytes were last hashed: inode, size, mtime and ctime in
 * nanoseconds. Any write, truncate, rename-over or utimes() changes at least one (ctime cannot
 * be set from user space), so a file whose stat still matches holds the bytes that were hashed.
 */
function fileIdentity(s: BigIntStats): string {
  return `${s.ino} ${s.size} ${s.mtimeNs} ${s.ctimeNs}`;
}

/**
 * {@link BlobStore} on a local directory (the embedded default).
 *
 * Layout: `root/blobs/sha256/<first 2 hex>/<hex>`; uploads go to `root/tmp/<uuid>` (same
 * filesystem, so the final step is an atomic link/rename). A blob file at its final path is
 * complete and was verified when written.
 *
 * Integrity on serve (issue 13): the files sit on a disk other processes can write, so when a
 * blob is written and verified its file identity (inode, size, mtime, ctime; see
 * {@link fileIdentity}) is recorded under `root/verified/`. {@link get} compares the open file's
 * stat with that record (kept in memory once read) and only when they differ (or there is
 * no record: blobs written before this) re-hashes the file before handing out a byte. A match is
 * recorded again; a mismatch is moved to `root/quarantine/`, logged, and answered BLOB_CORRUPT.
 * Re-hashing every GET would cost a full read per pull; the stat check costs microseconds and
 * catches any change made through the filesystem. {@link verify} (fsck) re-hashes regardless.
 */
export class FsBlobStore implements BlobStore {
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private readonly verifiedDir: string;
  private readonly quarantineDir: string;
  private readonly logger = new Logger('FsBlobStore');
  /**
   * Identities this process has verified or read from a record, so the usual GET costs the
   * fstat it needs anyway and no record read (measured: a record read per GET was +1-2 ms on a
   * loaded 2-core machine). A stale entry can only differ from the file's stat, which sends the
   * check to the record and the bytes, never past them.
   */
  private readonly known = new Map<string, string>();

  constructor(readonly root: string) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.tmpDir = join(root, 'tmp');
    this.verifiedDir = join(root, 'verified', 'sha256');
    this.quarantineDir = join(root, 'quarantine');
  }

  /** Creates the directory layout; safe to call repeatedly. */
  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  /** Where the file identity of a verified blob is recorded. */
  private recordOf(hex: string): string {
    return join(this.verifiedDir, hex.slice(0, 2), hex);
  }

  private async readRecord(hex: string): Promise<string | null> {
    try {
      return await readFile(this.recordOf(hex), 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        return null;
      }
      throw err;
    }
  }

  /**
   * Not fsynced: a record only spares a re-hash. One a crash left empty or old does not match
   * the file's identity, so the blob is hashed again and the record rewritten; that cost two
   * fsyncs of every blob stored (8 blobs a cold `steps` build).
   */
  private async writeRecord(hex: string, s: BigIntStats): Promise<void> {
    const path = this.recordOf(hex);
    await writeFileAtomic(this.tmpDir, path, join(path, '..'), fileIdentity(s), { durable: false });
    this.remember(hex, fileIdentity(s));
  }

  private remember(hex: string, identity: string): void {
    this.known.delete(hex);
    this.known.set(hex, identity);
    if (this.known.size > KNOWN_MAX) {
      // Maps iterate in insertion order: the first key is the least recently remembered.
      const oldest = this.known.keys().next();
      if (oldest.done !== true) {
        this.known.delete(oldest.value);
      }
    }
  }

  /** Hashes an open blob file from the start (positional reads: the handle's offset is not used). */
  private async hashFile(fh: FileHandle): Promise<BlobDigest> {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) {
        break;
      }
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return `sha256:${hash.digest('hex')}`;
  }

  /**
   * Re-hashes the open file of `digest` when `force` or its stat differs from the record; records
   * a match, quarantines a mismatch. Returns the actual digest when it did not match.
   */
  private async check(
    digest: BlobDigest,
    hex: string,
    fh: FileHandle,
    force: boolean,
  ): Promise<{ ok: true; size: number } | { ok: false; size: number; actual: BlobDigest }> {
    const before = await fh.stat({ bigint: true });
    const identity = fileIdentity(before);
    if (!force && this.known.get(hex) === identity) {
      return { ok: true, size: Number(before.size) };
    }
    if (!force && (await this.readRecord(hex)) === identity) {
      this.remember(hex, identity);
      return { ok: true, size: Number(before.size) };
    }
    const actual = await this.hashFile(fh);
    const after = await fh.stat({ bigint: true });
    if (actual === digest && fileIdentity(after) === fileIdentity(before)) {
      await this.writeRecord(hex, after);
      return { ok: true, size: Number(after.size) };
    }
    // A published blob file is never written again: one that changed while we hashed it is
    // being tampered with, whatever the bytes we happened to read.
    await this.quarantine(digest, hex, actual);
    return { ok: false, size: Number(after.size), actual };
  }

  /** Moves a blob whose bytes do not hash to its digest out of the blob namespace. */
  private async quarantine(digest: BlobDigest, hex: string, actual: BlobDigest): Promise<void> {
    await mkdir(this.quarantineDir, { recursive: true });
    const target = join(this.quarantineDir, `${hex}.${Date.now()}`);
    try {
      await rename(this.pathOf(digest), target);
      this.logger.error(
        `blob ${digest} failed verification (its bytes hash to ${actual}): moved to ${target}`,
      );
    } catch (err) {
      // A concurrent reader quarantined it first: it is out of the namespace either way.
      if (errnoCode(err) !== 'ENOENT') {
        throw err;
      }
    }
    this.known.delete(hex);
    await unlinkQuietly(this.recordOf(hex));
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
      const { hex } = parseBlobDigest(digest);
      const checked = await this.check(digest, hex, fh, false);
      if (!checked.ok) {
        throw new StorageError(
          'BLOB_CORRUPT',
          `blob ${digest} failed verification (its bytes hash to ${checked.actual}, or changed while hashed) and was quarantined`,
        );
      }
      const size = checked.size;
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
    // The source may fail (a client going away) while the temp file is being made, before
    // the loop below listens: keep that error from being an unhandled 'error' event.
    const source: { error: Error | null } = { error: null };
    const noteError = (err: Error): void => {
      source.error ??= err;
    };
    data.on('error', noteError);
    try {
      tmp = await tempPath(this.tmpDir);
      fh = await open(tmp, 'wx');
      if (source.error !== null) {
        throw source.error;
      }
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
      if (created) {
        // Stat after the link/unlink dance: both change ctime.
        await this.writeRecord(
          parseBlobDigest(digest).hex,
          await stat(this.pathOf(digest), { bigint: true }),
        );
      }
      return { digest, size, created };
    } catch (err) {
      data.destroy();
      await fh?.close().catch(() => undefined);
      if (tmp !== undefined) {
        await unlinkQuietly(tmp).catch(() => undefined);
      }
      throw wrapFsError(err);
    } finally {
      data.off('error', noteError);
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
      const deleted = await unlinkQuietly(this.pathOf(digest));
      const { hex } = parseBlobDigest(digest);
      this.known.delete(hex);
      await unlinkQuietly(this.recordOf(hex));
      return deleted;
    } catch (err) {
      throw wrapFsError(err);
    }
  }

  async verify(digest: BlobDigest): Promise<BlobVerifyResult> {
    const { hex } = parseBlobDigest(digest);
    let fh: FileHandle;
    try {
      fh = await open(this.pathOf(digest), 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        return { status: 'missing' };
      }
      throw wrapFsError(err);
    }
    try {
      const checked = await this.check(digest, hex, fh, true);
      return checked.ok
        ? { status: 'ok', size: checked.size }
        : { status: 'quarantined', size: checked.size, actual: checked.actual };
    } catch (err) {
      throw wrapFsError(err);
    } finally {
      await fh.close();
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
