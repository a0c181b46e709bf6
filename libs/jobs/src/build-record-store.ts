import { ChainableCommander, Redis } from 'ioredis';
import {
  BuildEvent,
  BuildPage,
  BuildRecord,
  BuildState,
  BuildSummary,
  isTerminalBuildState,
  StepRecord,
  StepStatus,
} from '@stratum/contracts';
import { JsonRecords, KeepRecord } from './json-records';
import { addToOutbox, buildOutboxEntry } from './outbox';
import { RedisKeys } from './redis';

/** An event as stored on a build's stream, with the stream id (used as the SSE `id:`). */
export interface StoredBuildEvent {
  readonly id: string;
  readonly event: BuildEvent;
}

const MAX_EVENTS = 200_000;

/** Ids of a project's index looked at by one {@link BuildRecordStore.listBySource}. */
export const MAX_SOURCE_SCAN = 10_000;

/**
 * Build records and their event (log) streams, kept in Redis so they survive API and worker
 * restarts. A record expires `retentionSeconds` after the build reaches a terminal state.
 */
export class BuildRecordStore {
  private readonly records: JsonRecords<BuildRecord>;
  /** Connections of finished {@link follow}s, kept for the next (a new one costs a handshake). */
  private readonly idleReaders: Redis[] = [];
  private closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly retentionSeconds: number,
    /**
     * Called right after a record change (and its outbox entry) is written, before anything
     * else: the chaos tests' crash point (TEST_CRASH_POINT=build-record-written:<state>).
     */
    private readonly afterWrite?: (record: BuildRecord) => void,
  ) {
    this.records = new JsonRecords<BuildRecord>(redis, {
      kind: 'build',
      key: RedisKeys.build,
      index: RedisKeys.buildIndex,
      onWrite: (tx, id, record) => indexWrite(tx, id, record, retentionSeconds),
    });
  }

  /**
   * Writes a new build record; `firstEvent` (the API's `queued` state event) goes onto its
   * event stream in the same transaction, so that no record is seen without it. So does its
   * outbox entry (commit status, notifications), as does every state change's: see outbox.ts.
   */
  async create(record: BuildRecord, firstEvent?: BuildEvent): Promise<void> {
    await this.records.create(record, (tx) => {
      if (firstEvent !== undefined) {
        tx.xadd(...eventArgs(record.id, firstEvent));
      }
      addToOutbox(tx, buildOutboxEntry(record));
      // A project's builds are indexed by project and by ref once, at creation (a source never
      // changes). Entries of expired records are dropped when a read finds them gone.
      const { project, ref } = record.source ?? {};
      if (project !== undefined && project !== null) {
        const created = Date.parse(record.createdAt);
        tx.zadd(RedisKeys.projectBuilds(project), created, record.id);
        if (ref !== undefined && ref !== null) {
          tx.zadd(RedisKeys.projectRefBuilds(project, ref), created, record.id);
          tx.zadd(RedisKeys.projectRefs(project), created, ref);
        }
      }
    });
    this.afterWrite?.(record);
  }

  /**
   * Records of the builds created since `sinceMs` (of one project when given), newest first: at
   * most {@link MAX_SOURCE_SCAN}, read 500 at a time. What the duration trends are drawn from.
   */
  async createdSince(sinceMs: number, project?: string): Promise<BuildRecord[]> {
    const index = project === undefined ? RedisKeys.buildIndex : RedisKeys.projectBuilds(project);
    const ids = await this.redis.zrevrangebyscore(index, '+inf', sinceMs, 'LIMIT', 0, MAX_SOURCE_SCAN);
    const out: BuildRecord[] = [];
    for (let i = 0; i < ids.length; i += 500) {
      const raws = await this.redis.mget(ids.slice(i, i + 500).map((id) => RedisKeys.build(id)));
      for (const raw of raws) {
        if (raw !== null) {
          out.push(JSON.parse(raw) as BuildRecord);
        }
      }
    }
    return out;
  }

  /**
   * Builds of a project (of one ref when given), newest first, optionally in `state` only.
   * The project's index is read newest first in chunks until the page is filled; ids whose
   * record expired leave the index on the way. At most {@link MAX_SOURCE_SCAN} ids are looked
   * at per request, so `total` counts within those.
   */
  async listBySource(
    filter: { readonly project: string; readonly ref?: string },
    offset: number,
    limit: number,
    state?: BuildState,
    visible?: (record: BuildRecord) => boolean,
  ): Promise<BuildPage> {
    const index =
      filter.ref === undefined
        ? RedisKeys.projectBuilds(filter.project)
        : RedisKeys.projectRefBuilds(filter.project, filter.ref);
    return this.scanPage(index, offset, limit, (record) => matches(record, state, visible), true);
  }

  /**
   * One page of the records of `index` (newest first) that `match`: the index is read in chunks
   * until the page is filled, at most {@link MAX_SOURCE_SCAN} ids per request (so `total` counts
   * within those). With `dropGone`, ids whose record expired leave the index on the way.
   */
  private async scanPage(
    index: string,
    offset: number,
    limit: number,
    match: (record: BuildRecord) => boolean,
    dropGone: boolean,
  ): Promise<BuildPage> {
    const matching: BuildRecord[] = [];
    let total = 0;
    for (let start = 0; start < MAX_SOURCE_SCAN; start += 500) {
      const ids = await this.redis.zrevrange(index, start, start + 499);
      if (ids.length === 0) {
        break;
      }
      const raws = await this.redis.mget(ids.map((id) => RedisKeys.build(id)));
      const gone: string[] = [];
      raws.forEach((raw, i) => {
        if (raw === null) {
          gone.push(ids[i]);
          return;
        }
        const record = JSON.parse(raw) as BuildRecord;
        if (!match(record)) {
          return;
        }
        if (total >= offset && matching.length < limit) {
          matching.push(record);
        }
        total++;
      });
      if (gone.length > 0 && dropGone) {
        await this.redis.zrem(index, ...gone);
        start -= gone.length;
      }
      if (ids.length < 500) {
        break;
      }
    }
    return { items: await this.summaries(matching), total, offset, limit };
  }

  /**
   * The refs a project built, each with its latest build (newest ref first, at most `max`).
   * A ref whose builds all expired is dropped from the project's refs.
   */
  async latestByRef(project: string, max = 100): Promise<{ ref: string; build: BuildRecord }[]> {
    const refs = await this.redis.zrevrange(RedisKeys.projectRefs(project), 0, max - 1);
    const out: { ref: string; build: BuildRecord }[] = [];
    for (const ref of refs) {
      const build = await this.latestOf(project, ref);
      if (build === null) {
        await this.redis.zrem(RedisKeys.projectRefs(project), ref);
      } else {
        out.push({ ref, build });
      }
    }
    return out;
  }

  /** The newest build of a project's ref that is still kept, or null. */
  async latestOf(project: string, ref: string): Promise<BuildRecord | null> {
    const index = RedisKeys.projectRefBuilds(project, ref);
    for (let round = 0; round < 20; round++) {
      const ids = await this.redis.zrevrange(index, 0, 9);
      if (ids.length === 0) {
        return null;
      }
      const raws = await this.redis.mget(ids.map((id) => RedisKeys.build(id)));
      const found = raws.findIndex((r) => r !== null);
      if (found >= 0) {
        return this.get(ids[found]);
      }
      await this.redis.zrem(index, ...ids);
    }
    return null;
  }

  /** The record with its steps (those of its step hash over those folded into the record). */
  async get(id: string): Promise<BuildRecord | null> {
    const [[, raw], [, fields]] = (await this.redis
      .pipeline()
      .get(RedisKeys.build(id))
      .hgetall(RedisKeys.buildSteps(id))
      .exec()) as [[unknown, string | null], [unknown, Record<string, string>]];
    return raw === null ? null : withSteps(JSON.parse(raw) as BuildRecord, fields);
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

  /** Opens the connection of updates and transitions now (see JsonRecords.prepare); at boot. */
  prepare(): void {
    this.records.prepare();
  }

  /** Closes the connections this store opened itself. */
  close(): Promise<void> {
    this.closed = true; // a follow still running closes its connection when it ends
    for (const reader of this.idleReaders.splice(0)) {
      reader.disconnect();
    }
    return this.records.close();
  }

  /**
   * Newest first, optionally only builds in `state`: one page read from the sorted-set index
   * of that state (or of all builds), so a page costs the same however many builds are kept.
   * Before reading, finished builds whose retention is over leave the indexes (their records
   * expire in Redis at the same instant, see {@link indexWrite}); an index that does not match
   * the records (data from before the state indexes, or written by an older version) is rebuilt.
   */
  async list(
    offset: number,
    limit: number,
    state?: BuildState,
    visible?: (record: BuildRecord) => boolean,
  ): Promise<BuildPage> {
    await this.pruneExpired();
    await this.reindexIfInconsistent();
    const index = state === undefined ? RedisKeys.buildIndex : RedisKeys.buildStateIndex(state);
    if (visible !== undefined) {
      // Only the builds a caller may see (API_AUTH): the index is scanned, not paged by rank,
      // so a page and its total count those alone (bounded as listBySource is). An id whose
      // record is gone is skipped here and left to the unfiltered read, which reindexes it.
      return this.scanPage(index, offset, limit, (record) => matches(record, state, visible), false);
    }
    // A record that vanished (deleted by hand) or whose index entry is stale is fixed and the
    // page read again; a few rounds settle it (each round fixes every entry it saw).
    for (let round = 0; ; round++) {
      const [[, ids], [, total]] = (await this.redis
        .multi()
        .zrevrange(index, offset, offset + limit - 1)
        .zcard(index)
        .exec()) as [[unknown, string[]], [unknown, number]];
      const raws = ids.length === 0 ? [] : await this.redis.mget(ids.map((id) => RedisKeys.build(id)));
      const records: BuildRecord[] = [];
      const stale: string[] = [];
      raws.forEach((raw, i) => {
        const record = raw === null ? null : (JSON.parse(raw) as BuildRecord);
        if (record === null || (state !== undefined && record.state !== state)) {
          stale.push(ids[i]);
        } else {
          records.push(record);
        }
      });
      if (stale.length === 0 || round === 3) {
        return { items: await this.summaries(records), total, offset, limit };
      }
      await this.reindex(stale);
    }
  }

  /**
   * Records without their steps, with step counts. A finished record holds its steps; an
   * unfinished one's are still in its step hash (read for those only: a few at a time).
   */
  private async summaries(records: readonly BuildRecord[]): Promise<BuildSummary[]> {
    const open = records.filter((r) => !isTerminalBuildState(r.state));
    const hashes = new Map<string, Record<string, string>>();
    if (open.length > 0) {
      const tx = this.redis.pipeline();
      for (const r of open) {
        tx.hgetall(RedisKeys.buildSteps(r.id));
      }
      const answers = (await tx.exec()) ?? [];
      open.forEach((r, i) => hashes.set(r.id, (answers[i]?.[1] as Record<string, string> | undefined) ?? {}));
    }
    return records.map((record) => {
      const { steps, ...rest } = withSteps(record, hashes.get(record.id) ?? {});
      return {
        ...rest,
        stepCount: steps.length,
        cachedSteps: steps.filter((s) => s.status === StepStatus.Cached).length,
      };
    });
  }

  /** Drops from the indexes the finished builds whose retention is over (by Redis's clock). */
  private async pruneExpired(): Promise<void> {
    await this.redis.eval(PRUNE_EXPIRED, INDEXES.length, ...INDEXES, 1000);
  }

  private lastFullReindex = 0;
  private fullReindex: Promise<void> | null = null;

  /**
   * Every write keeps `sum of the state indexes == all index` (one MULTI); when it does not
   * hold (records from before the state indexes, or created by an older version during a
   * rolling upgrade), every record is indexed again, at most once a minute per process.
   */
  private async reindexIfInconsistent(): Promise<void> {
    const tx = this.redis.multi().zcard(RedisKeys.buildIndex);
    for (const s of BUILD_STATES) {
      tx.zcard(RedisKeys.buildStateIndex(s));
    }
    const [all, ...byState] = ((await tx.exec()) ?? []).map(([, n]) => n as number);
    if (byState.reduce((a, b) => a + b, 0) === all || Date.now() - this.lastFullReindex < 60_000) {
      return;
    }
    this.fullReindex ??= (async () => {
      try {
        this.lastFullReindex = Date.now();
        await this.reindex(await this.allRecordIds());
      } finally {
        this.fullReindex = null;
      }
    })();
    await this.fullReindex;
  }

  /** Ids of every build record in Redis, indexed or not, and of every index entry. */
  private async allRecordIds(): Promise<string[]> {
    const ids = new Set(await this.redis.zrevrange(RedisKeys.buildIndex, 0, -1));
    const prefix = RedisKeys.build('');
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(
        cursor,
        'MATCH',
        `${prefix}*`,
        'COUNT',
        1000,
        'TYPE',
        'string',
      );
      cursor = next;
      for (const key of keys) {
        const id = key.slice(prefix.length);
        if (!id.includes(':')) {
          ids.add(id); // not stratum:build:<id>:cancel
        }
      }
    } while (cursor !== '0');
    return [...ids];
  }

  /**
   * Puts each id in the indexes its record says (under WATCH, like any write: a concurrent
   * transition is not undone), or out of all of them when it has no record.
   */
  private async reindex(ids: readonly string[]): Promise<void> {
    const gone: string[] = [];
    for (const id of ids) {
      if ((await this.records.update(id, () => undefined)) === null) {
        gone.push(id);
      }
    }
    if (gone.length > 0) {
      const tx = this.redis.multi();
      for (const index of INDEXES) {
        tx.zrem(index, ...gone);
      }
      await tx.exec();
    }
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
   * Records several step status changes, in order (a later one for the same index wins), with
   * their `step` events appended in that order, atomically (one script). Each step is a field
   * of the build's step hash: the cost is the batch's, not the build's (rewriting the record
   * per step made 10,000 LABELs take 292 s). Ends as `recordStep` called for each in turn would.
   * Without a record (expired) only the events go out, as they always did.
   */
  async recordSteps(id: string, steps: readonly StepRecord[]): Promise<void> {
    if (steps.length === 0) {
      return;
    }
    const args: string[] = [String(MAX_EVENTS)];
    for (const step of steps) {
      args.push(String(step.index), JSON.stringify(step));
    }
    await this.redis.eval(
      RECORD_STEPS,
      3,
      RedisKeys.build(id),
      RedisKeys.buildSteps(id),
      RedisKeys.buildEvents(id),
      ...args,
    );
  }

  /**
   * Moves the build to `state` (with its timestamps) and emits a `state` event. A finished
   * build stays as it finished: a late or second run of its job (one whose lock expired during
   * a Redis outage and was delivered again) cannot move it back, nor change its image; the
   * record is answered unchanged and no event is emitted.
   */
  async transition(
    id: string,
    state: BuildState,
    extra: Partial<Pick<BuildRecord, 'error' | 'imageDigest'>> & { readonly worker?: string } = {},
    /** Events that go onto the stream just before the state event, in the same transaction. */
    before: readonly BuildEvent[] = [],
  ): Promise<BuildRecord | null> {
    const at = new Date().toISOString();
    // A finished record holds its steps (lists and metrics read records only): fold the hash
    // in once, at the end. The hash stays until the record expires; reads overlay it.
    const fields = isTerminalBuildState(state) ? await this.redis.hgetall(RedisKeys.buildSteps(id)) : {};
    let changed = false;
    const record = await this.update(
      id,
      (r) => {
        if (isTerminalBuildState(r.state)) {
          throw new KeepRecord();
        }
        changed = true;
        r.steps = withSteps(r, fields).steps;
        r.state = state;
        if (state === 'running') {
          r.startedAt = at;
          r.attempts += 1;
          if (extra.worker !== undefined) {
            r.worker = extra.worker;
            r.attemptHistory = [
              ...(r.attemptHistory ?? []),
              { attempt: r.attempts, worker: extra.worker, startedAt: at },
            ];
          }
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
      (tx, r) => {
        for (const event of before) {
          tx.xadd(...eventArgs(id, event));
        }
        tx.xadd(...eventArgs(id, { type: 'state', state, at }));
        addToOutbox(tx, buildOutboxEntry(r));
      },
    );
    if (changed && record !== null) {
      this.afterWrite?.(record);
    }
    return record;
  }

  /**
   * Replays a build's events after `afterId` ('0' for all), then follows new ones live until a
   * terminal `state` event has been delivered. Uses a connection of its own for blocking reads
   * (one a finished follow left idle, when there is one).
   */
  async *follow(id: string, afterId = '0', signal?: AbortSignal): AsyncGenerator<StoredBuildEvent> {
    const key = RedisKeys.buildEvents(id);
    const reader = this.idleReaders.pop() ?? this.redis.duplicate();
    const onAbort = (): void => reader.disconnect();
    signal?.addEventListener('abort', onAbort, { once: true });
    const aborted = (): boolean => signal?.aborted === true;
    let last = afterId;
    let reusable = false;
    // The first read does not block: a build already over ends the stream at once (no 5 s
    // wait on resume). After that, reads block (returning at once while events are waiting);
    // the record is looked at only when a read finds nothing: the terminal state event is
    // written in the same transaction as the terminal record, so it is on the stream by then.
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
              reusable = true;
              return;
            }
            lookedAfterEnd = true;
            block = false;
            continue;
          }
          block = true;
          continue;
        }
        block = !lookedAfterEnd;
        for (const [, entries] of batch) {
          for (const [streamId, fields] of entries) {
            last = streamId;
            const event = JSON.parse(fields[1]) as BuildEvent;
            yield { id: streamId, event };
            if (event.type === 'state' && isTerminalBuildState(event.state)) {
              reusable = true;
              return;
            }
          }
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // A read still blocked (the consumer stopped early, or aborted) cannot be taken back.
      if (
        reusable &&
        !this.closed &&
        !aborted() &&
        reader.status === 'ready' &&
        this.idleReaders.length < 8
      ) {
        this.idleReaders.push(reader);
      } else {
        reader.disconnect();
      }
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

/** `record` with the steps of its step hash (`index -> StepRecord JSON`) over its own. */
function withSteps(record: BuildRecord, fields: Record<string, string>): BuildRecord {
  const names = Object.keys(fields);
  if (names.length === 0) {
    return record;
  }
  const byIndex = new Map(record.steps.map((s) => [s.index, s]));
  for (const name of names) {
    const step = JSON.parse(fields[name]) as StepRecord;
    byIndex.set(step.index, step);
  }
  record.steps = [...byIndex.values()].sort((a, b) => a.index - b.index);
  return record;
}

/**
 * KEYS: record, step hash, event stream; ARGV: stream max length, then (index, step JSON)
 * pairs. Sets each step in the hash when the record exists (the hash expiring with it), and
 * appends the `step` events in order (their JSON is what JSON.stringify({type, step}) gives).
 */
const RECORD_STEPS = `
local n = (#ARGV - 1) / 2
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, n do
    redis.call('HSET', KEYS[2], ARGV[2 * i], ARGV[2 * i + 1])
  end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
for i = 1, n do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'e', '{"type":"step","step":' .. ARGV[2 * i + 1] .. '}')
end
return n
`;

function eventArgs(id: string, event: BuildEvent): [string, 'MAXLEN', '~', string, '*', 'e', string] {
  return [RedisKeys.buildEvents(id), 'MAXLEN', '~', String(MAX_EVENTS), '*', 'e', JSON.stringify(event)];
}

const BUILD_STATES: readonly BuildState[] = Object.values(BuildState);
/** Every index a build id may be in. */
const INDEXES: readonly string[] = [
  RedisKeys.buildExpiryIndex,
  RedisKeys.buildIndex,
  ...BUILD_STATES.map((s) => RedisKeys.buildStateIndex(s)),
];

/**
 * Index changes of a build record write, in the write's MULTI: the record is in the index of
 * all builds and in the index of its state only. A finished record expires `retentionSeconds`
 * after it finished, and is in the expiry index with that instant, so that pruning the index
 * by Redis's clock drops exactly the records Redis has expired.
 */
function indexWrite(tx: ChainableCommander, id: string, record: BuildRecord, retentionSeconds: number): void {
  const created = Date.parse(record.createdAt);
  tx.zadd(RedisKeys.buildIndex, created, id);
  for (const s of BUILD_STATES) {
    if (s === record.state) {
      tx.zadd(RedisKeys.buildStateIndex(s), created, id);
    } else {
      tx.zrem(RedisKeys.buildStateIndex(s), id);
    }
  }
  if (isTerminalBuildState(record.state)) {
    const finished = record.finishedAt === null ? Date.now() : Date.parse(record.finishedAt);
    const at = finished + retentionSeconds * 1000;
    tx.pexpireat(RedisKeys.build(id), at)
      .pexpireat(RedisKeys.buildEvents(id), at)
      .pexpireat(RedisKeys.buildSteps(id), at)
      .zadd(RedisKeys.buildExpiryIndex, at, id);
  } else {
    tx.zrem(RedisKeys.buildExpiryIndex, id);
  }
}

/**
 * KEYS: the expiry index, then every other index; ARGV: how many to drop at most. Drops the
 * ids whose expiry (ms) has passed by the server's clock (the clock PEXPIREAT goes by) from
 * every index, atomically with the read, so a write that extends a retention in between is
 * not undone.
 */
const PRUNE_EXPIRED = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  for i = 1, #KEYS do
    redis.call('ZREM', KEYS[i], id)
  end
end
return #ids
`;

/** Whether a record is in `state` (when given) and `visible` (when given). */
function matches(
  record: BuildRecord,
  state: BuildState | undefined,
  visible: ((record: BuildRecord) => boolean) | undefined,
): boolean {
  return (state === undefined || record.state === state) && (visible === undefined || visible(record));
}
