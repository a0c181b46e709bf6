import { Redis } from 'ioredis';
import { Digest, StratumError } from '@stratum/contracts';

// Container records are shared by the API (creates, lists, removes) and the builder worker
// (runs, commits). They belong in @stratum/jobs beside BuildRecordStore; until that lib has
// them, the worker imports this file. Keep it free of Nest and of anything host-specific.

export const ContainerState = {
  /** Recorded; its run-container job is queued. */
  Created: 'created',
  Running: 'running',
  /** The command ended (or could not start); the upper dir keeps its changes for a commit. */
  Exited: 'exited',
  /** Deleted by the user; a tombstone kept for a while so GET answers `removed`. */
  Removed: 'removed',
} as const;
export type ContainerState = (typeof ContainerState)[keyof typeof ContainerState];

export const CommitState = {
  Queued: 'queued',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
} as const;
export type CommitState = (typeof CommitState)[keyof typeof CommitState];

/** A commit of a container, kept on the container's record. */
export interface ContainerCommit {
  readonly id: string;
  readonly repository: string;
  readonly tag: string;
  readonly message: string;
  readonly author: string;
  readonly changes: string[];
  state: CommitState;
  imageDigest: Digest | null;
  error: string | null;
  readonly createdAt: string;
  finishedAt: string | null;
}

/**
 * The container's configuration as Docker's `container.Config` holds it: the image's config
 * with the run's overrides applied. A commit starts from this, as `docker commit` does.
 */
export interface ContainerRunConfig {
  readonly Entrypoint: string[];
  readonly Cmd: string[];
  readonly Env: string[];
  readonly WorkingDir: string;
  readonly User: string;
}

export interface ContainerLogs {
  stdout: string;
  stderr: string;
  /** True when older output was dropped to keep each stream within the limit. */
  truncated: boolean;
}

/** What `GET /api/v1/containers/:id` answers. */
export interface ContainerRecord {
  readonly id: string;
  state: ContainerState;
  /** The image as the request named it. */
  readonly image: string;
  /** `repository@manifestDigest`: the exact image resolved at creation. */
  readonly imageRef: string;
  readonly imageDigest: Digest;
  /** The argv run: Entrypoint + Cmd. */
  readonly command: string[];
  readonly config: ContainerRunConfig;
  readonly network: 'none' | 'host';
  readonly createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  signal: string | null;
  /** Why the container could not run, when it could not. */
  error: string | null;
  logs: ContainerLogs;
  /** Id of the worker whose host holds the container's upper dir. */
  worker: string | null;
  commits: ContainerCommit[];
}

/** Key layout, all under `stratum:container:`. */
export const ContainerKeys = {
  record: (id: string) => `stratum:container:${id}`,
  /** Sorted set of live container ids by creation time. */
  index: 'stratum:container:_index',
  /** Pub/sub: ids of removed containers, so the worker holding one deletes its files. */
  removedChannel: 'stratum:container:_removed',
} as const;

/** A container id: 32 lowercase hex digits. */
export const CONTAINER_ID = /^[a-f0-9]{32}$/;

/** Thrown by an update's change function to leave the record as it is. */
export class KeepRecord extends Error {}

/**
 * Container records in Redis, as JSON. Updates are read-modify-write under WATCH, retried on
 * conflict, so the API (remove, commit) and a worker (state, logs) never lose each other's
 * writes. Removed records expire after `retentionSeconds`.
 */
export class ContainerRecordStore {
  private txConn: Redis | null = null;
  private txChain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    private readonly retentionSeconds: number,
  ) {}

  async create(record: ContainerRecord): Promise<void> {
    await this.redis
      .multi()
      .set(ContainerKeys.record(record.id), JSON.stringify(record))
      .zadd(ContainerKeys.index, Date.parse(record.createdAt), record.id)
      .exec();
  }

  async get(id: string): Promise<ContainerRecord | null> {
    if (!CONTAINER_ID.test(id)) {
      return null;
    }
    const raw = await this.redis.get(ContainerKeys.record(id));
    return raw === null ? null : (JSON.parse(raw) as ContainerRecord);
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
   * {@link KeepRecord} to write nothing). Returns null when the record does not exist.
   */
  async update(id: string, change: (record: ContainerRecord) => void): Promise<ContainerRecord | null> {
    const run = this.txChain.then(() => this.updateNow(id, change));
    this.txChain = run.catch(() => undefined);
    return run;
  }

  private async updateNow(
    id: string,
    change: (record: ContainerRecord) => void,
  ): Promise<ContainerRecord | null> {
    const key = ContainerKeys.record(id);
    const conn = (this.txConn ??= this.redis.duplicate());
    for (let attempt = 0; attempt < 50; attempt++) {
      await conn.watch(key);
      const raw = await conn.get(key);
      if (raw === null) {
        await conn.unwatch();
        return null;
      }
      const record = JSON.parse(raw) as ContainerRecord;
      try {
        change(record);
      } catch (err) {
        await conn.unwatch();
        if (err instanceof KeepRecord) {
          return JSON.parse(raw) as ContainerRecord;
        }
        throw err;
      }
      const tx = conn.multi().set(key, JSON.stringify(record));
      if (record.state === ContainerState.Removed) {
        tx.expire(key, this.retentionSeconds).zrem(ContainerKeys.index, id);
      }
      if ((await tx.exec()) !== null) {
        return record;
      }
    }
    throw new Error(`container ${id}: too many concurrent updates`);
  }

  /** Live (not removed) containers, newest first. Expired ids are dropped from the index. */
  async list(): Promise<ContainerRecord[]> {
    const ids = await this.redis.zrevrange(ContainerKeys.index, 0, -1);
    const out: ContainerRecord[] = [];
    const stale: string[] = [];
    for (let i = 0; i < ids.length; i += 200) {
      const chunk = ids.slice(i, i + 200);
      const raws = await this.redis.mget(chunk.map((id) => ContainerKeys.record(id)));
      raws.forEach((raw, j) => {
        if (raw === null) {
          stale.push(chunk[j]);
          return;
        }
        const record = JSON.parse(raw) as ContainerRecord;
        if (record.state !== ContainerState.Removed) {
          out.push(record);
        }
      });
    }
    if (stale.length > 0) {
      await this.redis.zrem(ContainerKeys.index, ...stale);
    }
    return out;
  }

  async publishRemoved(id: string): Promise<void> {
    await this.redis.publish(ContainerKeys.removedChannel, id);
  }

  async close(): Promise<void> {
    await this.txChain;
    this.txConn?.disconnect();
    this.txConn = null;
  }
}
