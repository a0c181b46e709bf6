import type { Redis } from 'ioredis';
import { PushRecord, StratumError } from '@stratum/contracts';
import { JsonRecords, RedisKeys, SecretBox } from '@stratum/jobs';
import { RegistryCredentials } from './registry-client';

/** Redis keys of pushes. */
export const PushKeys = {
  push: (id: string) => `stratum:push:${id}`,
  credentials: (id: string) => `stratum:push:${id}:credentials`,
  cancel: (id: string) => `stratum:push:${id}:cancel`,
  /**
   * Index JsonRecords' layout asks for. Push records are not listed, and {@link PushRecordStore.create}
   * writes records itself (with their expiry), so nothing is ever added to it.
   */
  index: 'stratum:pushes',
} as const;

/** The setting whose value keys the encryption of push credentials. */
export const PUSH_CREDENTIALS_KEY_SETTING = 'AUTH_SECRET';

/**
 * Push records and the credentials a push request brought, in Redis. Credentials never travel
 * in the job payload (CONVENTIONS §4: ids and digests only); they are kept AES-256-GCM
 * encrypted under a key derived from AUTH_SECRET, and deleted as soon as the push is over.
 * Without AUTH_SECRET no credentials are kept at all: {@link create} refuses them (a push to
 * another registry then relies on REGISTRY_CREDENTIALS).
 *
 * Records are updated under WATCH/MULTI ({@link JsonRecords}), so the API and a worker (or two
 * attempts of a push job overlapping after a stall) never lose each other's changes.
 */
export class PushRecordStore {
  private readonly box: SecretBox;
  private readonly records: JsonRecords<PushRecord>;

  constructor(
    private readonly redis: Redis,
    private readonly retentionSeconds: number,
    secret: string | null,
  ) {
    this.box = new SecretBox(secret, 'stratum-push-credentials');
    this.records = new JsonRecords<PushRecord>(redis, {
      kind: 'push',
      key: PushKeys.push,
      index: PushKeys.index,
      // The SET of an update drops the key's TTL: put it back in the same transaction.
      onWrite: (tx, id) => {
        tx.expire(PushKeys.push(id), retentionSeconds);
      },
    });
  }

  /**
   * Throws BAD_REQUEST naming AUTH_SECRET when no key is configured: credentials are then
   * refused rather than kept in clear ({@link create} checks the same).
   */
  assertKeepsCredentials(): void {
    this.requireKey();
  }

  private requireKey(): void {
    if (!this.box.available) {
      throw new StratumError(
        'BAD_REQUEST',
        `credentials cannot be accepted: ${PUSH_CREDENTIALS_KEY_SETTING} is not set on this service ` +
          `(it keys the encryption of push credentials); ask the operator to set it, or to configure ` +
          `the registry's credentials in REGISTRY_CREDENTIALS and push without credentials`,
      );
    }
  }

  /**
   * Records a push (and its credentials, encrypted) unless a record with its id exists already:
   * a second submission of the same push (a retried build job) changes nothing. True when this
   * call created it. Throws BAD_REQUEST for credentials when no key is configured.
   */
  async create(record: PushRecord, credentials: RegistryCredentials | null): Promise<boolean> {
    const sealed = credentials === null ? null : this.seal(credentials);
    const multi = this.redis
      .multi()
      .set(PushKeys.push(record.id), JSON.stringify(record), 'EX', this.retentionSeconds, 'NX');
    if (sealed !== null) {
      multi.set(PushKeys.credentials(record.id), sealed, 'EX', this.retentionSeconds, 'NX');
    }
    const results = await multi.exec();
    return results?.[0]?.[1] === 'OK';
  }

  get(id: string): Promise<PushRecord | null> {
    return this.records.get(id);
  }

  /**
   * Applies `change` atomically (read-modify-write under WATCH, retried on conflict). Returns
   * null when the record does not exist (expired).
   */
  update(id: string, change: (record: PushRecord) => void): Promise<PushRecord | null> {
    return this.records.update(id, change);
  }

  async credentials(id: string): Promise<RegistryCredentials | null> {
    const raw = await this.redis.get(PushKeys.credentials(id));
    return raw === null ? null : this.open(raw);
  }

  /**
   * Asks for a push to stop: a flag the worker checks before and while it runs (a push still
   * queued stops at once when taken), and the cancel channel, on which the worker running the
   * job (its id is the push id) aborts it.
   */
  async requestCancel(id: string): Promise<void> {
    await this.redis
      .multi()
      .set(PushKeys.cancel(id), '1', 'EX', this.retentionSeconds)
      .publish(RedisKeys.cancelChannel, id)
      .exec();
  }

  async isCancelRequested(id: string): Promise<boolean> {
    return (await this.redis.exists(PushKeys.cancel(id))) === 1;
  }

  async dropCredentials(id: string): Promise<void> {
    await this.redis.del(PushKeys.credentials(id));
  }

  /** Closes the connection updates use (waits for pending ones). */
  close(): Promise<void> {
    return this.records.close();
  }

  private seal(c: RegistryCredentials): string {
    this.requireKey();
    return this.box.seal(Buffer.from(JSON.stringify(c)));
  }

  private open(raw: string): RegistryCredentials | null {
    const plain = this.box.open(raw); // null: another secret, or tampered: as if there were none
    return plain === null ? null : (JSON.parse(plain.toString('utf8')) as RegistryCredentials);
  }
}
