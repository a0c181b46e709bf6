import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Client } from 'minio';
import { bufferChunks } from './blob-verifier';
import { errnoCode, syncDir, tempPath, unlinkQuietly, wrapFsError } from './fs-util';
import { MultipartUpload } from './s3-blob-store';
import { isS3NotFound, listObjects, mapS3Error, removeQuietly } from './s3-util';
import { StorageError } from './storage-error';

/** Upload ids are UUIDs we mint; anything else never becomes a path or an object key. */
const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Part index as a fixed-width name, so a listing sorts in order. */
const PART_NAME = /^\d{6}$/;
/** Most parts (chunks) one upload may have: a PATCH per part, each a file or an object. */
export const MAX_UPLOAD_PARTS = 100_000;

function checkUpload(id: string, index?: number): void {
  if (!UPLOAD_ID.test(id)) {
    throw new StorageError('NAME_INVALID', `invalid upload id ${JSON.stringify(id.slice(0, 80))}`);
  }
  if (index !== undefined && (!Number.isInteger(index) || index < 0 || index >= MAX_UPLOAD_PARTS)) {
    throw new StorageError(
      'BLOB_TOO_LARGE',
      `upload ${id} would need part ${index}; at most ${MAX_UPLOAD_PARTS} chunks per upload`,
    );
  }
}

function partName(index: number): string {
  return String(index).padStart(6, '0');
}

/**
 * The bytes of registry upload sessions (chunked blob uploads), kept in the shared store rather
 * than on one API replica's disk, so that any replica can take the next chunk or the final PUT.
 * Each chunk is one part (`uploads/<id>/<index>`); the session's offset and part count live in
 * Redis (see the registry's UploadSessionStore). A part write is all-or-nothing: a failed one
 * leaves nothing that a later {@link get} would read.
 */
export interface UploadPartStore {
  /**
   * Writes part `index` of upload `id` (replacing a part left there by a failed attempt) and
   * returns its size. With `maxBytes`, fails with BLOB_TOO_LARGE as soon as more arrive.
   */
  putPart(id: string, index: number, data: Readable, maxBytes?: number): Promise<number>;
  /** The bytes of part `index`; BLOB_UNKNOWN when missing. */
  getPart(id: string, index: number): Promise<Readable>;
  /** Removes every part of an upload (missing ones are fine). */
  deleteUpload(id: string): Promise<void>;
  /** Uploads that have parts, with the time of their newest part (for sweeping abandoned ones). */
  listUploads(): AsyncIterable<{ readonly id: string; readonly modifiedAt: Date }>;
}

/** Counts bytes and stops at `maxBytes`. */
async function* limited(data: Readable, maxBytes: number | undefined, id: string): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of bufferChunks(data)) {
    total += chunk.length;
    if (maxBytes !== undefined && total > maxBytes) {
      throw new StorageError('BLOB_TOO_LARGE', `upload ${id} exceeds the limit of ${maxBytes} bytes`);
    }
    yield chunk;
  }
}

/** {@link UploadPartStore} under `root/uploads/<id>/<index>` of a (shared) directory. */
export class FsUploadPartStore implements UploadPartStore {
  private readonly dir: string;
  private readonly tmpDir: string;

  constructor(readonly root: string) {
    this.dir = join(root, 'uploads');
    this.tmpDir = join(root, 'tmp');
  }

  async putPart(id: string, index: number, data: Readable, maxBytes?: number): Promise<number> {
    checkUpload(id, index);
    const tmp = await tempPath(this.tmpDir);
    let size = 0;
    try {
      const fh = await open(tmp, 'wx');
      try {
        for await (const chunk of limited(data, maxBytes, id)) {
          await fh.write(chunk);
          size += chunk.length;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const dir = join(this.dir, id);
      await mkdir(dir, { recursive: true });
      await rename(tmp, join(dir, partName(index)));
      await syncDir(dir);
      return size;
    } catch (err) {
      data.destroy();
      await unlinkQuietly(tmp).catch(() => undefined);
      throw wrapFsError(err);
    }
  }

  async getPart(id: string, index: number): Promise<Readable> {
    checkUpload(id, index);
    try {
      const fh = await open(join(this.dir, id, partName(index)), 'r');
      return fh.createReadStream();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new StorageError('BLOB_UNKNOWN', `part ${index} of upload ${id} is missing`);
      }
      throw wrapFsError(err);
    }
  }

  async deleteUpload(id: string): Promise<void> {
    checkUpload(id);
    await rm(join(this.dir, id), { recursive: true, force: true });
  }

  async *listUploads(): AsyncIterable<{ id: string; modifiedAt: Date }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const id of names) {
      if (!UPLOAD_ID.test(id)) {
        continue;
      }
      try {
        let newest = (await stat(join(this.dir, id))).mtimeMs;
        for (const part of await readdir(join(this.dir, id))) {
          if (PART_NAME.test(part)) {
            newest = Math.max(newest, (await stat(join(this.dir, id, part))).mtimeMs);
          }
        }
        yield { id, modifiedAt: new Date(newest) };
      } catch {
        // removed meanwhile
      }
    }
  }
}

const UPLOADS_PREFIX = 'uploads/';

/** {@link UploadPartStore} as objects `uploads/<id>/<index>` of the bucket. */
export class S3UploadPartStore implements UploadPartStore {
  constructor(
    private readonly client: Client,
    private readonly bucket: string,
    private readonly partSize = 8 * 1024 * 1024,
  ) {}

  async putPart(id: string, index: number, data: Readable, maxBytes?: number): Promise<number> {
    checkUpload(id, index);
    const key = `${UPLOADS_PREFIX}${id}/${partName(index)}`;
    // Written under the final key; the session only counts the part once this returns, so a
    // half-written part is never read, and the next attempt at this index overwrites it.
    const upload = new MultipartUpload(this.client, this.bucket, key, this.partSize);
    let size = 0;
    try {
      for await (const chunk of limited(data, maxBytes, id)) {
        await upload.write(chunk);
        size += chunk.length;
      }
      await upload.complete();
      return size;
    } catch (err) {
      data.destroy();
      await upload.abort().catch(() => undefined);
      throw mapS3Error(err, `writing part ${index} of upload ${id}`);
    }
  }

  async getPart(id: string, index: number): Promise<Readable> {
    checkUpload(id, index);
    try {
      return await this.client.getObject(this.bucket, `${UPLOADS_PREFIX}${id}/${partName(index)}`);
    } catch (err) {
      if (isS3NotFound(err)) {
        throw new StorageError('BLOB_UNKNOWN', `part ${index} of upload ${id} is missing`);
      }
      throw mapS3Error(err, `reading part ${index} of upload ${id}`);
    }
  }

  async deleteUpload(id: string): Promise<void> {
    checkUpload(id);
    const keys: string[] = [];
    for await (const item of listObjects(this.client, this.bucket, `${UPLOADS_PREFIX}${id}/`)) {
      if (item.name !== undefined) {
        keys.push(item.name);
      }
    }
    for (const key of keys) {
      await removeQuietly(this.client, this.bucket, key);
    }
  }

  async *listUploads(): AsyncIterable<{ id: string; modifiedAt: Date }> {
    const newest = new Map<string, number>();
    for await (const item of listObjects(this.client, this.bucket, UPLOADS_PREFIX)) {
      const [id] = (item.name ?? '').slice(UPLOADS_PREFIX.length).split('/');
      if (id !== undefined && UPLOAD_ID.test(id)) {
        newest.set(id, Math.max(newest.get(id) ?? 0, item.lastModified?.getTime() ?? Date.now()));
      }
    }
    for (const [id, at] of newest) {
      yield { id, modifiedAt: new Date(at) };
    }
  }
}
