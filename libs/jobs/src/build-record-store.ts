import { ChainableCommander, Redis } from 'ioredis';
import {
  BuildEvent,
  BuildPage,
  BuildRecord,
  BuildState,
  isTerminalBuildState,
  StepRecord,
} from '@stratum/contracts';
import { JsonRecords } from './json-records';
import { RedisKeys } from './redis';

/** An event as stored on a build's stream, with the stream id (used as the SSE `id:`). */
export interface StoredBuildEvent {
  readonly id: string;
  readonly event: BuildEvent;
}

const MAX_EVENTS = 200_000;

/**
 * Build records and their event (log) streams, kept in Redis so they survive API and worker
 * restarts. A record expires `retentionSeconds` after the build reaches a terminal state.
 */
export class BuildRecordStore {
  private readonly records: JsonRecords<BuildRecord>;

  constructor(
    private readonly redis: Redis,
    private readonly retentionSeconds: number,
  ) {
    this.records = new JsonRecords<BuildRecord>(redis, {
      kind: 'build',
      key: RedisKeys.build,
      index: RedisKeys.buildIndex,
      onWrite: (tx, id, record) => {
        if (isTerminalBuildState(record.state)) {
          tx.expire(RedisKeys.build(id), retentionSeconds).expire(
            RedisKeys.buildEvents(id),
            retentionSeconds,
          );
        }
      },
    });
  }

  create(record: BuildRecord): Promise<void> {
    return this.records.create(record);
  }

  get(id: string): Promise<BuildRecord | null> {
    return this.records.get(id);
  }

  /**
   * Read-modify-write under WATCH, retried on conflict, so the API (cancel) and a worker
   * (progress) never overwrite each other's changes. Returns null when the record is gone.
   */
  update(
    id: string,
    change: (record: BuildRecord) => void,
    alsoInTransaction?: (tx: ChainableCommander, record: BuildRecord) => void,
  ): Promise<BuildRecord | null> {
    return this.records.update(id, change, alsoInTransaction);
  }

  /** Closes the connections this store opened itself. */
  close(): Promise<void> {
    return this.records.close();
  }

  /** Newest first. Ids whose record has expired are dropped from the index on the way. */
  async list(offset: number, limit: number, state?: BuildState): Promise<BuildPage> {
    const items: BuildRecord[] = [];
    let matched = 0;
    await this.records.scan((record) => {
      if (state !== undefined && record.state !== state) {
        return;
      }
      if (matched >= offset && items.length < limit) {
        items.push(record);
      }
      matched++;
    });
    return { items, total: matched, offset, limit };
  }

  async appendEvent(id: string, event: BuildEvent): Promise<string> {
    const streamId = await this.redis.xadd(...eventArgs(id, event));
    return streamId ?? '';
  }

  /** Records a step's new status and emits the matching `step` event. */
  recordStep(id: string, step: StepRecord): Promise<void> {
    return this.recordSteps(id, [step]);
  }

  /**
   * Records several step status changes, in order (a later one for the same index wins), in
   * one read-modify-write, with their `step` events appended in that order in the same
   * transaction. Ends as `recordStep` called for each in turn would.
   */
  async recordSteps(id: string, steps: readonly StepRecord[]): Promise<void> {
    if (steps.length === 0) {
      return;
    }
    const record = await this.update(
      id,
      (r) => {
        const byIndex = new Map(r.steps.map((s) => [s.index, s]));
        for (const step of steps) {
          byIndex.set(step.index, step);
        }
        r.steps = [...byIndex.values()].sort((a, b) => a.index - b.index);
      },
      (tx) => {
        for (const step of steps) {
          tx.xadd(...eventArgs(id, { type: 'step', step }));
        }
      },
    );
    if (record === null) {
      // No record (expired): the events still go out, as they always did.
      for (const step of steps) {
        await this.appendEvent(id, { type: 'step', step });
      }
    }
  }

  /** Moves the build to `state` (with its timestamps) and emits a `state` event. */
  async transition(
    id: string,
    state: BuildState,
    extra: Partial<Pick<BuildRecord, 'error' | 'imageDigest'>> = {},
  ): Promise<BuildRecord | null> {
    const at = new Date().toISOString();
    const record = await this.update(
      id,
      (r) => {
        r.state = state;
        if (state === 'running') {
          r.startedAt = at;
          r.attempts += 1;
        }
        if (isTerminalBuildState(state)) {
          r.finishedAt = at;
        }
        if (extra.error !== undefined) {
          r.error = extra.error;
        }
        if (extra.imageDigest !== undefined) {
          r.imageDigest = extra.imageDigest;
        }
        // The state event goes out in the same transaction: whoever sees the record in a
        // terminal state finds the terminal event on the stream too (follow() relies on it).
      },
      (tx) => tx.xadd(...eventArgs(id, { type: 'state', state, at })),
    );
    return record;
  }

  /**
   * Replays a build's events after `afterId` ('0' for all), then follows new ones live until a
   * terminal `state` event has been delivered. Uses its own connection for blocking reads.
   */
  async *follow(id: string, afterId = '0', signal?: AbortSignal): AsyncGenerator<StoredBuildEvent> {
    const key = RedisKeys.buildEvents(id);
    const reader = this.redis.duplicate();
    const onAbort = (): void => reader.disconnect();
    signal?.addEventListener('abort', onAbort, { once: true });
    const aborted = (): boolean => signal?.aborted === true;
    let last = afterId;
    // Read without blocking while there is a backlog; block only once caught up and the build
    // is still going. A build already over ends the stream at once (no 5 s wait on resume).
    let block = false;
    let lookedAfterEnd = false;
    try {
      while (!aborted()) {
        let batch: [string, [string, string[]][]][] | null;
        try {
          batch = block
            ? await reader.xread('COUNT', 500, 'BLOCK', 5000, 'STREAMS', key, last)
            : await reader.xread('COUNT', 500, 'STREAMS', key, last);
        } catch (err) {
          if (aborted()) {
            return;
          }
          throw err;
        }
        if (batch === null) {
          const record = await this.get(id);
          if (record === null || isTerminalBuildState(record.state)) {
            // Its last events may have landed after our read: one more look, then done.
            if (lookedAfterEnd) {
              return;
            }
            lookedAfterEnd = true;
            block = false;
            continue;
          }
          block = true;
          continue;
        }
        block = false;
        for (const [, entries] of batch) {
          for (const [streamId, fields] of entries) {
            last = streamId;
            const event = JSON.parse(fields[1]) as BuildEvent;
            yield { id: streamId, event };
            if (event.type === 'state' && isTerminalBuildState(event.state)) {
              return;
            }
          }
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      reader.disconnect();
    }
  }

  /** Marks a build as asked to stop; workers check it before and while running. */
  async requestCancel(id: string): Promise<void> {
    await this.redis
      .multi()
      .set(RedisKeys.buildCancel(id), '1', 'EX', this.retentionSeconds)
      .publish(RedisKeys.cancelChannel, id)
      .exec();
  }

  async isCancelRequested(id: string): Promise<boolean> {
    return (await this.redis.exists(RedisKeys.buildCancel(id))) === 1;
  }
}

function eventArgs(id: string, event: BuildEvent): [string, 'MAXLEN', '~', string, '*', 'e', string] {
  return [RedisKeys.buildEvents(id), 'MAXLEN', '~', String(MAX_EVENTS), '*', 'e', JSON.stringify(event)];
}
