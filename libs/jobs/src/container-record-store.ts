import { Redis } from 'ioredis';
import { CONTAINER_ID, ContainerRecord, ContainerState, StratumError } from '@stratum/contracts';
import { JsonRecords } from './json-records';
import { RedisKeys } from './redis';

/**
 * Container records in Redis, shared by the API (creates, lists, removes, asks for commits)
 * and the builder worker (runs, commits). Removed records stay as tombstones for
 * `retentionSeconds`, off the index.
 */
export class ContainerRecordStore {
  private readonly records: JsonRecords<ContainerRecord>;

  constructor(redis: Redis, retentionSeconds: number) {
    this.records = new JsonRecords<ContainerRecord>(redis, {
      kind: 'container',
      key: RedisKeys.container,
      index: RedisKeys.containerIndex,
      onWrite: (tx, id, record) => {
        if (record.state === ContainerState.Removed) {
          tx.expire(RedisKeys.container(id), retentionSeconds).zrem(RedisKeys.containerIndex, id);
        }
      },
    });
  }

  create(record: ContainerRecord): Promise<void> {
    return this.records.create(record);
  }

  async get(id: string): Promise<ContainerRecord | null> {
    return CONTAINER_ID.test(id) ? this.records.get(id) : null;
  }

  /** Like {@link get} but CONTAINER_UNKNOWN when absent. */
  async require(id: string): Promise<ContainerRecord> {
    const record = await this.get(id);
    if (record === null) {
      throw new StratumError('CONTAINER_UNKNOWN', `no container with id "${id}"`);
    }
    return record;
  }

  /**
   * Applies `change` atomically. `change` may throw (a StratumError refusing a transition, or
   * KeepRecord to write nothing). Returns null when the record does not exist.
   */
  update(id: string, change: (record: ContainerRecord) => void): Promise<ContainerRecord | null> {
    return this.records.update(id, change);
  }

  /** Live (not removed) containers, newest first. */
  async list(): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    await this.records.scan((r) => {
      if (r.state !== ContainerState.Removed) {
        out.push(r);
      }
    });
    return out;
  }

  close(): Promise<void> {
    return this.records.close();
  }
}
