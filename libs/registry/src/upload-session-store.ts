import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { FileHandle, mkdir, open, readdir, stat, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { RegistryError } from './registry-error';

/** A blob upload in progress. */
export interface UploadSession {
  readonly id: string;
  readonly repository: string;
  /** Bytes received so far (the size of the temp file). */
  readonly offset: number;
  readonly startedAt: string;
}

/** Redis keys of the registry, in one place. */
export const RegistryKeys = {
  upload: (id: string) => `stratum:registry:upload:${id}`,
  uploadLock: (id: string) => `stratum:registry:upload:${id}:lock`,
  referrers: (repository: string, subject: string) => `stratum:registry:referrers:${repository}@${subject}`,
} as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** Compare-and-delete, so a lock whose holder timed out is not released by that holder. */
const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/**
 * Upload sessions: the session record (repository, start time) lives in Redis with a TTL that
 * each chunk refreshes; the bytes go to a temp file under `dir` on local disk, whatever the blob
 * backend (S3 included). The final PUT streams that file into the BlobStore with the expected
 * digest. So a chunked upload must reach the same host for all its requests; monolithic uploads
 * (POST ?digest=) never touch this store.
 */
export class UploadSessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly dir: string,
    private readonly ttlSeconds: number,
  ) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Starts an empty upload into `repository`. */
  async create(repository: string): Promise<UploadSession> {
    const id = randomUUID();
    const startedAt = new Date().toISOString();
    await mkdir(this.dir, { recursive: true });
    const fh = await open(this.pathOf(id), 'wx');
    await fh.close();
    await this.redis
      .multi()
      .hset(RegistryKeys.upload(id), { repository, startedAt })
      .expire(RegistryKeys.upload(id), this.ttlSeconds)
      .exec();
    return { id, repository, offset: 0, startedAt };
  }

  /** The session, or null when unknown, expired, or its bytes are gone. */
  async get(id: string): Promise<UploadSession | null> {
    if (!UUID.test(id)) {
      return null;
    }
    const record = await this.redis.hgetall(RegistryKeys.upload(id));
    const { repository, startedAt } = record;
    if (repository === undefined || startedAt === undefined) {
      return null;
    }
    try {
      const s = await stat(this.pathOf(id));
      return { id, repository, startedAt, offset: s.size };
    } catch {
      return null;
    }
  }

  /**
   * Appends a chunk at the end of the upload. `start`, when given (from Content-Range), must equal
   * the current offset, else RANGE_INVALID (416) and nothing is written; `length`, when given,
   * must be the number of bytes that arrive. A chunk that fails half-way is cut off again, so
   * the upload stays as it was before the request. One chunk at a time per upload (a Redis lock).
   */
  async append(
    session: UploadSession,
    data: Readable,
    options: { start?: number; length?: number; maxBytes?: number } = {},
  ): Promise<number> {
    const token = randomBytes(16).toString('hex');
    const lockKey = RegistryKeys.uploadLock(session.id);
    const locked = await this.redis.set(lockKey, token, 'PX', this.ttlSeconds * 1000, 'NX');
    if (locked !== 'OK') {
      data.resume();
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another chunk of this upload is being written', {
        upload: session.id,
      });
    }
    const path = this.pathOf(session.id);
    let fh: FileHandle | undefined;
    let offset = -1;
    try {
      fh = await open(path, 'r+');
      offset = (await fh.stat()).size;
      if (options.start !== undefined && options.start !== offset) {
        throw new RegistryError(
          'RANGE_INVALID',
          `chunk starts at ${options.start} but the upload holds ${offset} bytes`,
          { offset },
        );
      }
      let position = offset;
      for await (const chunk of data as AsyncIterable<Buffer>) {
        if (options.maxBytes !== undefined && position + chunk.length > options.maxBytes) {
          throw new RegistryError(
            'SIZE_INVALID',
            `upload exceeds the limit of ${options.maxBytes} bytes`,
            undefined,
            {
              status: 413,
            },
          );
        }
        await fh.write(chunk, 0, chunk.length, position);
        position += chunk.length;
      }
      if (options.length !== undefined && position - offset !== options.length) {
        throw new RegistryError(
          'SIZE_INVALID',
          `chunk announced ${options.length} bytes but ${position - offset} arrived`,
        );
      }
      await fh.close();
      fh = undefined;
      await this.redis.expire(RegistryKeys.upload(session.id), this.ttlSeconds);
      return position;
    } catch (err) {
      data.resume();
      await fh?.close().catch(() => undefined);
      if (offset >= 0) {
        await truncate(path, offset).catch(() => undefined);
      }
      throw err;
    } finally {
      await this.redis.eval(RELEASE_LOCK, 1, lockKey, token).catch(() => undefined);
    }
  }

  /** The bytes received so far. */
  read(id: string): Readable {
    return createReadStream(this.pathOf(id));
  }

  /** Forgets a session and removes its bytes. True when it existed. */
  async delete(id: string): Promise<boolean> {
    if (!UUID.test(id)) {
      return false;
    }
    const removed = await this.redis.del(RegistryKeys.upload(id), RegistryKeys.uploadLock(id));
    let fileRemoved = false;
    try {
      await unlink(this.pathOf(id));
      fileRemoved = true;
    } catch {
      // already gone
    }
    return removed > 0 || fileRemoved;
  }

  /**
   * Removes temp files whose session expired (Redis forgot it) and that were not touched for
   * `graceMs`. Returns how many were removed.
   */
  async sweep(graceMs = 60 * 60 * 1000): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      if (!UUID.test(name)) {
        continue;
      }
      if ((await this.redis.exists(RegistryKeys.upload(name))) > 0) {
        continue;
      }
      try {
        const s = await stat(join(this.dir, name));
        if (Date.now() - s.mtimeMs > graceMs) {
          await unlink(join(this.dir, name));
          removed++;
        }
      } catch {
        // raced with another sweeper or a delete
      }
    }
    return removed;
  }

  private pathOf(id: string): string {
    if (!UUID.test(id)) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload unknown: ${id}`);
    }
    return join(this.dir, id);
  }
}
