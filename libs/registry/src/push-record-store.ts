import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { PushRecord } from '@stratum/contracts';
import { RegistryCredentials } from './registry-client';

/** Redis keys of pushes. */
export const PushKeys = {
  push: (id: string) => `stratum:push:${id}`,
  credentials: (id: string) => `stratum:push:${id}:credentials`,
} as const;

/**
 * Push records and the credentials a push request brought, in Redis. Credentials never travel
 * in the job payload (CONVENTIONS §4: ids and digests only); they are kept AES-256-GCM
 * encrypted under a key derived from AUTH_SECRET when one is configured, and deleted as soon
 * as the push is over.
 */
export class PushRecordStore {
  private readonly key: Buffer | null;

  constructor(
    private readonly redis: Redis,
    private readonly retentionSeconds: number,
    secret: string | null,
  ) {
    this.key =
      secret === null ? null : createHash('sha256').update(`stratum-push-credentials:${secret}`).digest();
  }

  async create(record: PushRecord, credentials: RegistryCredentials | null): Promise<void> {
    const multi = this.redis
      .multi()
      .set(PushKeys.push(record.id), JSON.stringify(record), 'EX', this.retentionSeconds);
    if (credentials !== null) {
      multi.set(PushKeys.credentials(record.id), this.seal(credentials), 'EX', this.retentionSeconds);
    }
    await multi.exec();
  }

  async get(id: string): Promise<PushRecord | null> {
    const raw = await this.redis.get(PushKeys.push(id));
    return raw === null ? null : (JSON.parse(raw) as PushRecord);
  }

  /** Read-modify-write. A push has one writer at a time (the worker running its job). */
  async update(id: string, change: (record: PushRecord) => void): Promise<PushRecord | null> {
    const record = await this.get(id);
    if (record === null) {
      return null;
    }
    change(record);
    await this.redis.set(PushKeys.push(id), JSON.stringify(record), 'EX', this.retentionSeconds);
    return record;
  }

  async credentials(id: string): Promise<RegistryCredentials | null> {
    const raw = await this.redis.get(PushKeys.credentials(id));
    return raw === null ? null : this.open(raw);
  }

  async dropCredentials(id: string): Promise<void> {
    await this.redis.del(PushKeys.credentials(id));
  }

  private seal(c: RegistryCredentials): string {
    const plain = Buffer.from(JSON.stringify(c));
    if (this.key === null) {
      return `plain:${plain.toString('base64')}`;
    }
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const data = Buffer.concat([cipher.update(plain), cipher.final()]);
    return `gcm:${Buffer.concat([iv, cipher.getAuthTag(), data]).toString('base64')}`;
  }

  private open(raw: string): RegistryCredentials | null {
    const [kind, b64] = raw.split(':', 2);
    const buf = Buffer.from(b64 ?? '', 'base64');
    try {
      if (kind === 'plain') {
        return JSON.parse(buf.toString('utf8')) as RegistryCredentials;
      }
      if (kind === 'gcm' && this.key !== null) {
        const decipher = createDecipheriv('aes-256-gcm', this.key, buf.subarray(0, 12));
        decipher.setAuthTag(buf.subarray(12, 28));
        const plain = Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]);
        return JSON.parse(plain.toString('utf8')) as RegistryCredentials;
      }
    } catch {
      // another secret, or tampered: as if there were none
    }
    return null;
  }
}
