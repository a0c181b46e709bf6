import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import { isStorageError, MAX_UPLOAD_PARTS, UploadPartStore } from '@stratum/storage';
import { RegistryError } from './registry-error';

/** A blob upload in progress. */
export interface UploadSession {
  readonly id: string;
  readonly repository: string;
  /** Bytes received so far. */
  readonly offset: number;
  /** Chunks stored so far (parts 0..parts-1 in the {@link UploadPartStore}). */
  readonly parts: number;
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
/** Compare-and-extend: the holder keeps its lock alive while a chunk streams in. */
const EXTEND_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
/**
 * A chunk's lock lives this long unless its holder renews it (every third of it): an API replica
 * that dies mid-chunk frees the upload for a retry on another replica within this time.
 */
const LOCK_MS = 30_000;

/**
 * Upload sessions, shared by every API replica: the session record (repository, start time,
 * offset, part count) lives in Redis with a TTL that each chunk refreshes; each chunk's bytes are
 * one part in the shared store's {@link UploadPartStore} (the bucket with S3, the store
 * directory with fs). So any replica can take the next PATCH, a status request or the final PUT,
 * which streams the parts in order into the BlobStore with the expected digest. Monolithic
 * uploads (POST ?digest=) never touch this store.
 */
export class UploadSessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly parts: UploadPartStore,
    private readonly ttlSeconds: number,
  ) {}

  /** Starts an empty upload into `repository`. */
  async create(repository: string): Promise<UploadSession> {
    const id = randomUUID();
    const startedAt = new Date().toISOString();
    await this.redis
      .multi()
      .hset(RegistryKeys.upload(id), { repository, startedAt, offset: 0, parts: 0 })
      .expire(RegistryKeys.upload(id), this.ttlSeconds)
      .exec();
    return { id, repository, offset: 0, parts: 0, startedAt };
  }

  /** The session, or null when unknown or expired. */
  async get(id: string): Promise<UploadSession | null> {
    if (!UUID.test(id)) {
      return null;
    }
    const record = await this.redis.hgetall(RegistryKeys.upload(id));
    const { repository, startedAt, offset, parts } = record;
    if (repository === undefined || startedAt === undefined) {
      return null;
    }
    return { id, repository, startedAt, offset: Number(offset ?? 0), parts: Number(parts ?? 0) };
  }

  /**
   * Appends a chunk at the end of the upload. `start`, when given (from Content-Range), must equal
   * the current offset, else RANGE_INVALID (416) and nothing is written; `length`, when given,
   * must be the number of bytes that arrive. A chunk that fails half-way is not counted, so the
   * upload stays as it was before the request. One chunk at a time per upload (a Redis lock that
   * its holder renews, so a replica that died mid-chunk does not block the upload for long).
   */
  async append(
    session: UploadSession,
    data: Readable,
    options: { start?: number; length?: number; maxBytes?: number } = {},
  ): Promise<number> {
    const token = randomBytes(16).toString('hex');
    const lockKey = RegistryKeys.uploadLock(session.id);
    const locked = await this.redis.set(lockKey, token, 'PX', LOCK_MS, 'NX');
    if (locked !== 'OK') {
      data.resume();
      throw new RegistryError('BLOB_UPLOAD_INVALID', 'another chunk of this upload is being written', {
        upload: session.id,
      });
    }
    const renew = setInterval(() => {
      this.redis.eval(EXTEND_LOCK, 1, lockKey, token, LOCK_MS).catch(() => undefined);
    }, LOCK_MS / 3);
    renew.unref();
    try {
      // Re-read under the lock: the caller's copy may predate a chunk another replica just took.
      const current = await this.get(session.id);
      if (current === null) {
        throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `blob upload unknown to registry: ${session.id}`, {
          upload: session.id,
        });
      }
      const { offset, parts } = current;
      if (options.start !== undefined && options.start !== offset) {
        throw new RegistryError(
          'RANGE_INVALID',
          `chunk starts at ${options.start} but the upload holds ${offset} bytes`,
          { offset },
        );
      }
      if (parts >= MAX_UPLOAD_PARTS) {
        throw new RegistryError(
          'BLOB_UPLOAD_INVALID',
          `upload already has ${parts} chunks, the most one upload may have; send larger chunks`,
          { upload: session.id },
        );
      }
      let size: number;
      try {
        size = await this.parts.putPart(
          session.id,
          parts,
          data,
          options.maxBytes !== undefined ? Math.max(0, options.maxBytes - offset) : undefined,
        );
      } catch (err) {
        if (isStorageError(err, 'BLOB_TOO_LARGE') && options.maxBytes !== undefined) {
          throw new RegistryError(
            'SIZE_INVALID',
            `upload exceeds the limit of ${options.maxBytes} bytes`,
            undefined,
            { status: 413 },
          );
        }
        throw err;
      }
      if (options.length !== undefined && size !== options.length) {
        throw new RegistryError(
          'SIZE_INVALID',
          `chunk announced ${options.length} bytes but ${size} arrived`,
        );
      }
      if (size === 0) {
        // Nothing to count; an empty part left behind is overwritten by the next chunk.
        await this.redis.expire(RegistryKeys.upload(session.id), this.ttlSeconds);
        return offset;
      }
      await this.redis
        .multi()
        .hset(RegistryKeys.upload(session.id), { offset: offset + size, parts: parts + 1 })
        .expire(RegistryKeys.upload(session.id), this.ttlSeconds)
        .exec();
      return offset + size;
    } catch (err) {
      data.resume();
      throw err;
    } finally {
      clearInterval(renew);
      await this.redis.eval(RELEASE_LOCK, 1, lockKey, token).catch(() => undefined);
    }
  }

  /** The bytes received so far: the session's parts, in order. */
  read(session: UploadSession): Readable {
    const parts = this.parts;
    return Readable.from(
      (async function* () {
        for (let i = 0; i < session.parts; i++) {
          for await (const chunk of await parts.getPart(session.id, i)) {
            yield chunk as Buffer;
          }
        }
      })(),
      { objectMode: false },
    );
  }

  /** Forgets a session and removes its bytes. True when it existed. */
  async delete(id: string): Promise<boolean> {
    if (!UUID.test(id)) {
      return false;
    }
    const removed = await this.redis.del(RegistryKeys.upload(id), RegistryKeys.uploadLock(id));
    await this.parts.deleteUpload(id);
    return removed > 0;
  }

  /**
   * Removes the parts of sessions that expired (Redis forgot them) and were not written to for
   * `graceMs`. Returns how many uploads were removed.
   */
  async sweep(graceMs = 60 * 60 * 1000): Promise<number> {
    let removed = 0;
    const stale: string[] = [];
    for await (const { id, modifiedAt } of this.parts.listUploads()) {
      if (
        Date.now() - modifiedAt.getTime() > graceMs &&
        (await this.redis.exists(RegistryKeys.upload(id))) === 0
      ) {
        stale.push(id);
      }
    }
    for (const id of stale) {
      await this.parts.deleteUpload(id);
      removed++;
    }
    return removed;
  }
}
