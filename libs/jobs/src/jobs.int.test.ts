import { randomUUID } from 'node:crypto';
import { Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { BuildEvent, BuildRecord, ContainerRecord, JobName, QueueName, StepRecord } from '@stratum/contracts';
import { newBuildRecord, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { BuildRecordStore, StoredBuildEvent } from './build-record-store';
import { ContainerRecordStore } from './container-record-store';
import { KeepRecord } from './json-records';
import { BuildProducer, CommitProducer, createQueue, jobOptions, PushProducer } from './producers';
import { createRedis, QUEUE_PREFIX, RedisKeys } from './redis';

jest.setTimeout(30_000);

const RETENTION = 3600;
let server: RedisServerHandle;
let redis: Redis;
let store: BuildRecordStore;

const record = newBuildRecord;

async function collect(it: AsyncIterable<StoredBuildEvent>): Promise<StoredBuildEvent[]> {
  const out: StoredBuildEvent[] = [];
  for await (const e of it) {
    out.push(e);
  }
  return out;
}

beforeAll(async () => {
  server = await startRedisServer();
  redis = createRedis(server.url, 'jobs-int-test');
  store = new BuildRecordStore(redis, RETENTION);
});

afterAll(async () => {
  await store.close();
  redis.disconnect();
  await server.stop();
});

describe('BuildRecordStore', () => {
  it('creates, gets and updates a record', async () => {
    const r = record();
    await store.create(r);
    expect(await store.get(r.id)).toEqual(r);
    const updated = await store.update(r.id, (x) => {
      x.error = 'e';
    });
    expect(updated?.error).toBe('e');
    expect((await store.get(r.id))?.error).toBe('e');
    // a running record has no expiry
    expect(await redis.ttl(RedisKeys.build(r.id))).toBe(-1);
  });

  it('answers null for unknown ids, and update of an unknown id is null', async () => {
    const id = randomUUID();
    expect(await store.get(id)).toBeNull();
    expect(await store.update(id, () => undefined)).toBeNull();
  });

  it('loses no update when two store instances (two processes) update concurrently', async () => {
    const r = record();
    await store.create(r);
    const otherRedis = createRedis(server.url, 'jobs-int-test-other');
    const other = new BuildRecordStore(otherRedis, RETENTION);
    try {
      const N = 40;
      const bump = (s: BuildRecordStore, tag: string) =>
        Array.from({ length: N }, (_, i) =>
          s.update(r.id, (x) => {
            x.attempts += 1;
            x.tags.push(`${tag}${i}`);
          }),
        );
      await Promise.all([...bump(store, 'a'), ...bump(other, 'b')]);
      const final = await store.get(r.id);
      expect(final?.attempts).toBe(2 * N);
      expect(final?.tags).toHaveLength(1 + 2 * N);
    } finally {
      await other.close();
      otherRedis.disconnect();
    }
  });

  it('a throwing change does not wedge later updates', async () => {
    const r = record();
    await store.create(r);
    await expect(
      store.update(r.id, () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const after = await store.update(r.id, (x) => {
      x.attempts = 7;
    });
    expect(after?.attempts).toBe(7);
  });

  describe('list', () => {
    const ids: string[] = [];
    let local: BuildRecordStore;
    let localRedis: Redis;

    beforeAll(async () => {
      // a fresh database so other tests' records do not count
      localRedis = new Redis(`${server.url}/3`, { maxRetriesPerRequest: null });
      local = new BuildRecordStore(localRedis, RETENTION);
      const base = Date.parse('2024-01-01T00:00:00Z');
      for (let i = 0; i < 7; i++) {
        const r = record({
          createdAt: new Date(base + i * 1000).toISOString(),
          state: i % 3 === 0 ? 'failed' : 'succeeded',
        });
        ids.push(r.id);
        await local.create(r);
      }
    });
    afterAll(async () => {
      await local.close();
      localRedis.disconnect();
    });

    it('pages newest first', async () => {
      const p1 = await local.list(0, 3);
      expect(p1.total).toBe(7);
      expect(p1.items.map((r) => r.id)).toEqual([ids[6], ids[5], ids[4]]);
      expect(p1).toMatchObject({ offset: 0, limit: 3 });
      const p3 = await local.list(6, 3);
      expect(p3.items.map((r) => r.id)).toEqual([ids[0]]);
      expect((await local.list(10, 3)).items).toEqual([]);
    });

    it('filters by state, with the total of that state', async () => {
      const failed = await local.list(0, 10, 'failed');
      expect(failed.items.map((r) => r.id)).toEqual([ids[6], ids[3], ids[0]]);
      expect(failed.total).toBe(3);
      const page = await local.list(1, 1, 'failed');
      expect(page.items.map((r) => r.id)).toEqual([ids[3]]);
      expect(page.total).toBe(3);
      expect((await local.list(0, 10, 'running')).total).toBe(0);
    });

    it('drops expired records from the index', async () => {
      await localRedis.del(RedisKeys.build(ids[5]));
      const page = await local.list(0, 10);
      expect(page.total).toBe(6);
      expect(page.items.map((r) => r.id)).not.toContain(ids[5]);
      expect(await localRedis.zscore(RedisKeys.buildIndex, ids[5])).toBeNull();
    });
  });

  describe('steps (issue 13 item 5: linear in the number of steps)', () => {
    const step = (index: number, status: 'pending' | 'done' | 'cached' = 'done'): StepRecord => ({
      index,
      name: `[stage-0] LABEL l${index}=v`,
      status,
      startedAt: null,
      finishedAt: null,
      durationMs: 1,
      layerSize: null,
    });

    it('records 10,000 steps one write each without rewriting the record, then folds them in at the end', async () => {
      const r = record();
      await store.create(r);
      await store.transition(r.id, 'running');
      const t0 = Date.now();
      for (let i = 0; i < 10_000; i++) {
        await store.recordStep(r.id, step(i, i % 2 === 0 ? 'done' : 'cached'));
      }
      const ms = Date.now() - t0;
      // The record itself did not grow while the steps were written (it was ~1.5 MB each write).
      expect((await redis.get(RedisKeys.build(r.id)))?.length).toBeLessThan(2000);
      expect(ms).toBeLessThan(30_000); // ~3 s here; rewriting the record per step took minutes
      const running = await store.get(r.id);
      expect(running?.steps.map((x) => x.index)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
      const [summary] = (await store.list(0, 1, 'running')).items;
      expect(summary).toMatchObject({ id: r.id, stepCount: 10_000, cachedSteps: 5_000 });
      expect(summary).not.toHaveProperty('steps');

      await store.transition(r.id, 'succeeded', { imageDigest: `sha256:${'d'.repeat(64)}` });
      const raw = JSON.parse((await redis.get(RedisKeys.build(r.id))) ?? '{}') as BuildRecord;
      expect(raw.steps).toHaveLength(10_000); // folded: lists and metrics read records only
      expect(await redis.pttl(RedisKeys.buildSteps(r.id))).toBeGreaterThan(0); // expires with it
      const events = await redis.xlen(RedisKeys.buildEvents(r.id));
      expect(events).toBe(10_000 + 2); // every step event, in the order written, plus two states
      const page = await store.list(0, 5);
      const listed = page.items.find((b) => b.id === r.id);
      expect(listed).toMatchObject({ stepCount: 10_000, cachedSteps: 5_000 });
      expect(JSON.stringify(page).length).toBeLessThan(20_000);
    });

    it('a step written after the end still shows, and its hash expires with the record', async () => {
      const r = record();
      await store.create(r);
      await store.recordSteps(r.id, [step(0, 'pending'), step(1, 'pending'), step(0)]);
      await store.transition(r.id, 'cancelled', { error: 'cancelled' });
      await store.recordStep(r.id, step(1));
      expect((await store.get(r.id))?.steps.map((x) => x.status)).toEqual(['done', 'done']);
      expect(await redis.pttl(RedisKeys.buildSteps(r.id))).toBeGreaterThan(0);
    });

    it('without a record only the events go out', async () => {
      const id = randomUUID();
      await store.recordStep(id, step(0));
      expect(await redis.exists(RedisKeys.buildSteps(id))).toBe(0);
      expect(await redis.xlen(RedisKeys.buildEvents(id))).toBe(1);
      await redis.del(RedisKeys.buildEvents(id));
    });
  });

  describe('list index', () => {
    // a database of its own: totals count only these records
    let db: Redis;
    let st: BuildRecordStore;
    const base = Date.parse('2024-02-01T00:00:00Z');
    const at = (i: number): string => new Date(base + i * 1000).toISOString();
    const ids = (page: { items: readonly { id: string }[] }): string[] => page.items.map((r) => r.id);
    const indexesOf = async (id: string): Promise<string[]> => {
      const keys = [
        RedisKeys.buildIndex,
        RedisKeys.buildExpiryIndex,
        ...['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => RedisKeys.buildStateIndex(s)),
      ];
      const out: string[] = [];
      for (const k of keys) {
        if ((await db.zscore(k, id)) !== null) {
          out.push(k);
        }
      }
      return out;
    };

    beforeEach(async () => {
      db = new Redis(`${server.url}/4`, { maxRetriesPerRequest: null });
      await db.flushdb();
      st = new BuildRecordStore(db, RETENTION);
    });
    afterEach(async () => {
      await st.close();
      db.disconnect();
    });

    it('pages newest first by creation time, through every page, with the total', async () => {
      const made: BuildRecord[] = [];
      // created out of order: the index orders by createdAt, not by insertion
      for (const i of [5, 0, 9, 3, 7, 1, 8, 2, 6, 4, 10]) {
        const r = record({ createdAt: at(i) });
        made[i] = r;
        await st.create(r);
      }
      const newestFirst = [...made].reverse().map((r) => r.id);
      const seen: string[] = [];
      for (let offset = 0; offset < 12; offset += 4) {
        const page = await st.list(offset, 4);
        expect(page).toMatchObject({ total: 11, offset, limit: 4 });
        seen.push(...ids(page));
      }
      expect(seen).toEqual(newestFirst);
      expect(ids(await st.list(11, 4))).toEqual([]);
    });

    it('with a visibility filter (API_AUTH): pages and totals count the visible builds only', async () => {
      const made: BuildRecord[] = [];
      for (let i = 0; i < 10; i++) {
        // even ones tag into team/app, odd ones into other/app; every third is failed
        const r = record({
          createdAt: at(i),
          tags: [i % 2 === 0 ? `team/app:${i}` : `other/app:${i}`],
          state: i % 3 === 0 ? 'failed' : 'succeeded',
        });
        made[i] = r;
        await st.create(r);
      }
      const team = (r: BuildRecord): boolean => r.tags.every((t) => t.startsWith('team/'));
      const evenNewestFirst = [8, 6, 4, 2, 0].map((i) => made[i].id);
      const seen: string[] = [];
      for (let offset = 0; offset < 6; offset += 2) {
        const page = await st.list(offset, 2, undefined, team);
        expect(page).toMatchObject({ total: 5, offset, limit: 2 });
        seen.push(...ids(page));
      }
      expect(seen).toEqual(evenNewestFirst);
      // with a state: failed and visible (0 and 6)
      expect(await st.list(0, 10, 'failed', team)).toMatchObject({ total: 2 });
      expect(ids(await st.list(0, 10, 'failed', team))).toEqual([made[6].id, made[0].id]);
      // a record gone from Redis is skipped, not counted
      await db.del(RedisKeys.build(made[8].id));
      expect(await st.list(0, 10, undefined, team)).toMatchObject({ total: 4 });
      expect(ids(await st.list(0, 1, undefined, team))).toEqual([made[6].id]);
      // without the filter, every build
      expect((await st.list(0, 20)).total).toBe(9);
    });

    it('follows transitions: a build is listed under its current state only', async () => {
      const a = record({ createdAt: at(1) });
      const b = record({ createdAt: at(2) });
      await st.create(a);
      await st.create(b);
      expect(ids(await st.list(0, 10, 'queued'))).toEqual([b.id, a.id]);
      await st.transition(a.id, 'running');
      expect(ids(await st.list(0, 10, 'queued'))).toEqual([b.id]);
      expect(ids(await st.list(0, 10, 'running'))).toEqual([a.id]);
      await st.transition(a.id, 'succeeded', { imageDigest: `sha256:${'d'.repeat(64)}` });
      const succeeded = await st.list(0, 10, 'succeeded');
      expect(ids(succeeded)).toEqual([a.id]);
      expect(succeeded.total).toBe(1);
      expect((await st.list(0, 10, 'running')).total).toBe(0);
      expect(await indexesOf(a.id)).toEqual([
        RedisKeys.buildIndex,
        RedisKeys.buildExpiryIndex,
        RedisKeys.buildStateIndex('succeeded'),
      ]);
      // the record, its events and its expiry entry end at the same instant
      const expiresAt = Number(await db.zscore(RedisKeys.buildExpiryIndex, a.id));
      expect(await db.pexpiretime(RedisKeys.build(a.id))).toBe(expiresAt);
      expect(Math.abs(expiresAt - Date.now() - RETENTION * 1000)).toBeLessThan(10_000);
      expect(await indexesOf(b.id)).toEqual([RedisKeys.buildIndex, RedisKeys.buildStateIndex('queued')]);
    });

    it('retention: an expired build leaves every index, and the totals', async () => {
      const short = new BuildRecordStore(db, 1);
      try {
        const keep = record({ createdAt: at(1) });
        const gone = record({ createdAt: at(2) });
        await short.create(keep);
        await short.create(gone);
        await short.transition(gone.id, 'failed', { error: 'exit 1' });
        expect((await short.list(0, 10, 'failed')).total).toBe(1);
        await new Promise((r) => setTimeout(r, 1300));
        expect(await db.exists(RedisKeys.build(gone.id))).toBe(0);
        const all = await short.list(0, 10);
        expect(ids(all)).toEqual([keep.id]);
        expect(all.total).toBe(1);
        expect(await short.list(0, 10, 'failed')).toMatchObject({ items: [], total: 0 });
        expect(await indexesOf(gone.id)).toEqual([]);
        expect(await indexesOf(keep.id)).toEqual([RedisKeys.buildIndex, RedisKeys.buildStateIndex('queued')]);
      } finally {
        await short.close();
      }
    });

    it('indexes records written before the state indexes existed, and forgets index entries without a record', async () => {
      // What an older version left: records with only the all-builds index (finished ones with
      // a relative EXPIRE), one record in no index at all, one index entry whose record is gone.
      const finished = new Date(Date.now() - 60_000).toISOString();
      const old = [
        record({ createdAt: at(1), state: 'succeeded', finishedAt: finished }),
        record({ createdAt: at(2), state: 'failed', finishedAt: finished }),
        record({ createdAt: at(3), state: 'queued' }),
      ];
      for (const r of old) {
        await db.set(RedisKeys.build(r.id), JSON.stringify(r));
        await db.zadd(RedisKeys.buildIndex, Date.parse(r.createdAt), r.id);
        if (r.state !== 'queued') {
          await db.expire(RedisKeys.build(r.id), RETENTION);
        }
      }
      const unindexed = record({ createdAt: at(4), state: 'running' });
      await db.set(RedisKeys.build(unindexed.id), JSON.stringify(unindexed));
      await db.zadd(RedisKeys.buildIndex, Date.parse(at(0)), 'vanished');
      const longAgo = record({ createdAt: at(0), state: 'failed', finishedAt: at(0) });
      await db.set(RedisKeys.build(longAgo.id), JSON.stringify(longAgo), 'EX', 60);
      await db.zadd(RedisKeys.buildIndex, Date.parse(longAgo.createdAt), longAgo.id);

      const running = await st.list(0, 10, 'running');
      expect(ids(running)).toEqual([unindexed.id]);
      expect(ids(await st.list(0, 10, 'succeeded'))).toEqual([old[0].id]);
      expect(ids(await st.list(0, 10, 'failed'))).toEqual([old[1].id]);
      const all = await st.list(0, 10);
      expect(ids(all)).toEqual([unindexed.id, old[2].id, old[1].id, old[0].id]);
      expect(all.total).toBe(4);
      expect(await indexesOf('vanished')).toEqual([]);
      // retention counts from the finish: one that finished longer ago is gone
      expect(await db.exists(RedisKeys.build(longAgo.id))).toBe(0);
      expect(await indexesOf(longAgo.id)).toEqual([]);
      // finished ones now expire by their finish time, and are in the expiry index
      expect(await indexesOf(old[1].id)).toContain(RedisKeys.buildExpiryIndex);
      expect(await db.pexpiretime(RedisKeys.build(old[1].id))).toBe(Date.parse(finished) + RETENTION * 1000);
    });

    it('fixes a stale state entry met while paging (written by an older version)', async () => {
      const r = record({ createdAt: at(1) });
      await st.create(r);
      // an older writer moved it to running without touching the state indexes
      await db.set(RedisKeys.build(r.id), JSON.stringify({ ...r, state: 'running' }));
      expect(await st.list(0, 10, 'queued')).toMatchObject({ items: [], total: 0 });
      expect(ids(await st.list(0, 10, 'running'))).toEqual([r.id]);
    });
  });

  describe('events', () => {
    it('replays appended events in order, then follows live ones until a terminal state', async () => {
      const r = record();
      await store.create(r);
      await store.appendEvent(r.id, { type: 'state', state: 'queued', at: r.createdAt });
      await store.transition(r.id, 'running');
      const following = collect(store.follow(r.id));
      await new Promise((res) => setTimeout(res, 200));
      await store.recordStep(r.id, {
        index: 0,
        name: 'RUN x',
        status: 'done',
        startedAt: 'a',
        finishedAt: 'b',
        durationMs: 5,
        layerSize: 10,
      });
      await store.appendEvent(r.id, { type: 'log', step: 0, stream: 'stdout', text: 'hi\n' });
      await store.appendEvent(r.id, { type: 'result', imageDigest: `sha256:${'d'.repeat(64)}` });
      const started = Date.now();
      await store.transition(r.id, 'succeeded', { imageDigest: `sha256:${'d'.repeat(64)}` });
      const events = await following;
      expect(Date.now() - started).toBeLessThan(2000); // ends on the terminal event, not on a timeout
      expect(events.map((e) => e.event.type)).toEqual(['state', 'state', 'step', 'log', 'result', 'state']);
      expect(events.map((e) => (e.event.type === 'state' ? e.event.state : null))).toEqual([
        'queued',
        'running',
        null,
        null,
        null,
        'succeeded',
      ]);
      // stream ids are strictly increasing
      const ids = events.map((e) => e.id);
      expect([...ids].sort(compareStreamIds)).toEqual(ids);
      expect(new Set(ids).size).toBe(ids.length);
      const rec = await store.get(r.id);
      expect(rec).toMatchObject({ state: 'succeeded', attempts: 1, imageDigest: `sha256:${'d'.repeat(64)}` });
      expect(rec?.startedAt).not.toBeNull();
      expect(rec?.finishedAt).not.toBeNull();
      expect(rec?.steps).toEqual([expect.objectContaining({ index: 0, status: 'done', durationMs: 5 })]);

      // replay after the end gives the same events and ends by itself
      const replay = await collect(store.follow(r.id));
      expect(replay).toEqual(events);

      // resume after an id
      const resumed = await collect(store.follow(r.id, events[2].id));
      expect(resumed).toEqual(events.slice(3));
    });

    it('sets the retention expiry on the record and its events at a terminal state', async () => {
      const r = record();
      await store.create(r);
      await store.appendEvent(r.id, { type: 'state', state: 'queued', at: r.createdAt });
      await store.transition(r.id, 'running');
      expect(await redis.ttl(RedisKeys.build(r.id))).toBe(-1);
      expect(await redis.ttl(RedisKeys.buildEvents(r.id))).toBe(-1);
      await store.transition(r.id, 'failed', { error: 'Dockerfile:2: exit 3' });
      for (const key of [RedisKeys.build(r.id), RedisKeys.buildEvents(r.id)]) {
        const ttl = await redis.ttl(key);
        expect(ttl).toBeGreaterThan(RETENTION - 10);
        expect(ttl).toBeLessThanOrEqual(RETENTION);
      }
      expect(await store.get(r.id)).toMatchObject({ state: 'failed', error: 'Dockerfile:2: exit 3' });
    });

    it('a finished build stays as it finished: later transitions change nothing and emit nothing', async () => {
      const r = record();
      await store.create(r);
      await store.transition(r.id, 'running');
      const digest = `sha256:${'e'.repeat(64)}` as const;
      const finished = await store.transition(r.id, 'succeeded', { imageDigest: digest });
      const eventsBefore = await redis.xlen(RedisKeys.buildEvents(r.id));
      // a second run of the same job, delivered again after its lock expired, ends late
      expect(await store.transition(r.id, 'running')).toEqual(finished);
      expect(await store.transition(r.id, 'queued')).toEqual(finished);
      expect(await store.transition(r.id, 'failed', { error: 'late' })).toEqual(finished);
      expect(await store.transition(r.id, 'succeeded', { imageDigest: `sha256:${'f'.repeat(64)}` })).toEqual(
        finished,
      );
      expect(await store.get(r.id)).toMatchObject({ state: 'succeeded', imageDigest: digest, attempts: 1 });
      expect(await redis.xlen(RedisKeys.buildEvents(r.id))).toBe(eventsBefore);
      expect(await store.list(0, 1, 'succeeded')).toMatchObject({ items: [{ id: r.id }] });
    });

    it('stops following when aborted', async () => {
      const r = record();
      await store.create(r);
      await store.appendEvent(r.id, { type: 'state', state: 'queued', at: r.createdAt });
      const abort = new AbortController();
      const seen: BuildEvent[] = [];
      const done = (async () => {
        for await (const e of store.follow(r.id, '0', abort.signal)) {
          seen.push(e.event);
        }
      })();
      await new Promise((res) => setTimeout(res, 200));
      const t = Date.now();
      abort.abort();
      await done;
      expect(Date.now() - t).toBeLessThan(1000);
      expect(seen).toHaveLength(1);
    });

    it('ends promptly when resumed after the terminal event (Last-Event-ID of the last frame)', async () => {
      const r = record();
      await store.create(r);
      await store.appendEvent(r.id, { type: 'state', state: 'queued', at: r.createdAt });
      await store.transition(r.id, 'cancelled', { error: 'cancelled' });
      const all = await collect(store.follow(r.id));
      const t = Date.now();
      expect(await collect(store.follow(r.id, all[all.length - 1].id))).toEqual([]);
      expect(Date.now() - t).toBeLessThan(1000);
    });

    it('transition() writes the events it is given just before its state event', async () => {
      const r = record();
      await store.create(r);
      await store.transition(r.id, 'running');
      const result = { type: 'result', imageDigest: `sha256:${'e'.repeat(64)}` } as const;
      await store.transition(r.id, 'succeeded', { imageDigest: result.imageDigest }, [result]);
      const types = (await collect(store.follow(r.id))).map((e) => e.event);
      expect(types.slice(-2)).toEqual([
        result,
        expect.objectContaining({ type: 'state', state: 'succeeded' }),
      ]);
      // A build already over keeps its stream as it was: no late result.
      await store.transition(r.id, 'failed', {}, [result]);
      expect(await redis.xlen(RedisKeys.buildEvents(r.id))).toBe(types.length);
    });

    it('create() writes the first event in the same transaction as the record', async () => {
      const r = record();
      await store.create(r, { type: 'state', state: 'queued', at: r.createdAt });
      await store.transition(r.id, 'succeeded');
      const events = await collect(store.follow(r.id));
      expect(events.map((e) => e.event)).toEqual([
        { type: 'state', state: 'queued', at: r.createdAt },
        expect.objectContaining({ type: 'state', state: 'succeeded' }),
      ]);
      const bare = record();
      await store.create(bare); // without one: an empty stream
      expect(await redis.xlen(RedisKeys.buildEvents(bare.id))).toBe(0);
    });

    it('reuses the connection of a finished follow, not one it aborted mid-read', async () => {
      const clients = async (): Promise<number> =>
        ((await redis.client('LIST')) as string).trim().split('\n').length;
      const done = record();
      await store.create(done);
      await store.transition(done.id, 'succeeded');
      await collect(store.follow(done.id)); // leaves its connection idle
      const connections = async (): Promise<number> =>
        Number(/total_connections_received:(\d+)/.exec(await redis.info('stats'))?.[1]);
      const before = await clients();
      const opened = await connections();
      for (let i = 0; i < 3; i++) {
        expect((await collect(store.follow(done.id))).map((e) => e.event.type)).toEqual(['state']);
      }
      expect(await connections()).toBe(opened); // no new connection: the idle one served all three
      expect(await clients()).toBe(before);
      // A follow aborted while blocked cannot hand its read back: its connection is closed.
      const running = record();
      await store.create(running);
      await store.transition(running.id, 'running');
      const abort = new AbortController();
      const following = collect(store.follow(running.id, '0', abort.signal));
      await new Promise((r) => setTimeout(r, 100));
      abort.abort();
      await following;
      const after = Date.now();
      while ((await clients()) >= before && Date.now() - after < 2000) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(await clients()).toBe(before - 1);
    });

    it('prepare() opens the update connection at once: the first transition opens none', async () => {
      const connections = async (): Promise<number> =>
        Number(/total_connections_received:(\d+)/.exec(await redis.info('stats'))?.[1]);
      const fresh = new BuildRecordStore(redis, RETENTION);
      try {
        const before = await connections();
        fresh.prepare();
        fresh.prepare(); // once only
        const r = record();
        await fresh.create(r);
        const opened = await connections();
        expect(opened).toBe(before + 1);
        expect((await fresh.transition(r.id, 'running'))?.state).toBe('running');
        expect(await connections()).toBe(opened);
      } finally {
        await fresh.close();
      }
      // without it, the first update opens its connection then
      const lazy = new BuildRecordStore(redis, RETENTION);
      try {
        const r = record();
        await lazy.create(r);
        const before = await connections();
        await lazy.transition(r.id, 'running');
        expect(await connections()).toBe(before + 1);
      } finally {
        await lazy.close();
      }
    });

    it('does not keep the connection of a follow that ends after close()', async () => {
      const local = new BuildRecordStore(redis, RETENTION);
      const r = record();
      await local.create(r);
      await local.transition(r.id, 'running');
      const events = collect(local.follow(r.id));
      await new Promise((resolve) => setTimeout(resolve, 100)); // blocked on its read
      await local.close();
      await new Promise((resolve) => setTimeout(resolve, 200)); // its own connections are gone
      const clientsBefore = ((await redis.client('LIST')) as string).trim().split('\n').length;
      await store.transition(r.id, 'succeeded'); // ends the follow
      await events;
      const deadline = Date.now() + 2000;
      let clientsAfter = clientsBefore;
      while (clientsAfter >= clientsBefore && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        clientsAfter = ((await redis.client('LIST')) as string).trim().split('\n').length;
      }
      expect(clientsAfter).toBe(clientsBefore - 1);
    });
  });

  it('requestCancel marks the build and publishes its id; isCancelRequested reads it', async () => {
    const id = randomUUID();
    const sub = createRedis(server.url, 'cancel-sub');
    try {
      const got = new Promise<string>((res) => sub.on('message', (_c: string, m: string) => res(m)));
      await sub.subscribe(RedisKeys.cancelChannel);
      expect(await store.isCancelRequested(id)).toBe(false);
      await store.requestCancel(id);
      expect(await store.isCancelRequested(id)).toBe(true);
      expect(await got).toBe(id);
      const ttl = await redis.ttl(RedisKeys.buildCancel(id));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(RETENTION);
    } finally {
      sub.disconnect();
    }
  });
});

describe('ContainerRecordStore', () => {
  const container = (id: string): ContainerRecord => ({
    id,
    state: 'exited',
    image: 'base:1',
    imageRef: `base@sha256:${'a'.repeat(64)}`,
    imageDigest: `sha256:${'a'.repeat(64)}`,
    command: ['true'],
    config: { Entrypoint: [], Cmd: ['true'], Env: [], WorkingDir: '', User: '' },
    network: 'none',
    createdAt: new Date().toISOString(),
    startedAt: null,
    finishedAt: null,
    exitCode: 0,
    signal: null,
    error: null,
    logs: { stdout: '', stderr: '', truncated: false },
    workerId: 'w1',
    commits: [],
  });
  let containers: ContainerRecordStore;
  beforeAll(() => {
    containers = new ContainerRecordStore(redis, RETENTION);
  });
  afterAll(() => containers.close());

  it('updates under WATCH like builds; KeepRecord writes nothing; a removed record leaves the list and expires', async () => {
    const id = randomUUID().replace(/-/g, '');
    await containers.create(container(id));
    expect(await containers.get('not-an-id')).toBeNull();
    await expect(containers.require('0'.repeat(32))).rejects.toMatchObject({ code: 'CONTAINER_UNKNOWN' });
    const kept = await containers.update(id, (r) => {
      r.exitCode = 9;
      throw new KeepRecord();
    });
    expect(kept?.exitCode).toBe(0);
    expect((await containers.get(id))?.exitCode).toBe(0);
    expect((await containers.list()).map((r) => r.id)).toContain(id);
    await containers.update(id, (r) => {
      r.state = 'removed';
    });
    expect((await containers.list()).map((r) => r.id)).not.toContain(id);
    expect((await containers.get(id))?.state).toBe('removed');
    expect(await redis.ttl(RedisKeys.container(id))).toBeGreaterThan(0);
    expect(await redis.zscore(RedisKeys.containerIndex, id)).toBeNull();
  });
});

function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am - bm || as - bs;
}

describe('producers', () => {
  const settings = { attempts: 3, retentionSeconds: 600 };
  let conn: Redis;
  let builds: BuildProducer;
  let commits: CommitProducer;
  let pushes: PushProducer;

  const buildData = (buildId: string) => ({
    buildId,
    contextDigest: `sha256:${'c'.repeat(64)}` as const,
    dockerfile: 'Dockerfile',
    tags: [],
    buildArgs: {},
    target: null,
    noCache: false,
  });

  beforeAll(() => {
    conn = createRedis(server.url, 'producers');
    builds = new BuildProducer(createQueue(QueueName.Build, conn), settings);
    commits = new CommitProducer(createQueue(QueueName.Commit, conn), settings, (name) =>
      createQueue(name, conn),
    );
    pushes = new PushProducer(createQueue(QueueName.Push, conn), settings);
  });
  afterAll(async () => {
    await Promise.all([builds.close(), commits.close(), pushes.close()]);
    conn.disconnect();
  });

  it('uses the build id as job id, so submitting twice enqueues once', async () => {
    const id = randomUUID();
    await builds.submit(buildData(id));
    await builds.submit(buildData(id));
    const jobs = await builds.queue.getJobs(['waiting']);
    expect(jobs.filter((j) => j.data.buildId === id)).toHaveLength(1);
    const job = await builds.queue.getJob(id);
    expect(job?.name).toBe(JobName.Build);
    expect(job?.data).toEqual(buildData(id));
    expect(job?.opts).toMatchObject({
      jobId: id,
      attempts: 3,
      backoff: { type: 'exponential', delay: 3000 },
      removeOnComplete: { age: 600 },
      removeOnFail: { age: 600 },
    });
  });

  it('uses the Stratum queue prefix and queue names', async () => {
    const id = randomUUID();
    await builds.submit(buildData(id));
    expect(await conn.exists(`${QUEUE_PREFIX}:${QueueName.Build}:${id}`)).toBe(1);
  });

  it('sets per-name options: a container run is attempted once', async () => {
    expect(jobOptions(JobName.RunContainer, 'x', settings)).toMatchObject({ jobId: 'x', attempts: 1 });
    expect(jobOptions(JobName.RunContainer, 'x', settings).backoff).toBeUndefined();
    for (const name of [JobName.Build, JobName.Commit, JobName.RemoveContainer, JobName.Push]) {
      expect(jobOptions(name, 'y', settings)).toMatchObject({ jobId: 'y', attempts: 3 });
    }
    const cid = randomUUID();
    await commits.runContainer({ containerId: cid });
    const run = await commits.queue.getJob(`run-${cid}`);
    expect(run?.name).toBe(JobName.RunContainer);
    expect(run?.opts.attempts).toBe(1);
    const pid = randomUUID();
    await pushes.push({
      pushId: pid,
      manifestDigest: `sha256:${'e'.repeat(64)}`,
      sourceRepository: 'a/b',
      targets: ['a/b:2'],
    });
    expect((await pushes.queue.getJob(pid))?.name).toBe(JobName.Push);
  });

  it("puts commits and removals on the owning worker's own queue, runs on the shared one", async () => {
    const cid = randomUUID().replace(/-/g, '');
    const commitId = randomUUID();
    await commits.commit('host-a', {
      containerId: cid,
      commitId,
      repository: 'r',
      tag: 't',
      message: '',
      author: '',
      changes: [],
    });
    await commits.removeContainer('host-a', { containerId: cid });
    const own = commits.onWorker('host-a').queue;
    expect(own.name).toBe(`${QueueName.Commit}.host-a`);
    const job = await own.getJob(commitId);
    expect(job?.name).toBe(JobName.Commit);
    expect(job?.opts).toMatchObject({ attempts: 3, backoff: { type: 'exponential', delay: 3000 } });
    expect((await own.getJob(`remove-${cid}`))?.name).toBe(JobName.RemoveContainer);
    expect(await commits.queue.getJob(commitId)).toBeUndefined();
    expect(await commits.onWorker('host-b').queue.getJob(commitId)).toBeUndefined();
    expect(commits.onWorker('host-a')).toBe(commits.onWorker('host-a'));
    expect(() => commits.onWorker('bad:id')).toThrow(/cannot name a queue/);
  });

  it('removeIfWaiting removes a waiting job, and refuses unknown and active ones', async () => {
    const waiting = randomUUID();
    await builds.submit(buildData(waiting));
    expect(await builds.removeIfWaiting(waiting)).toBe(true);
    expect(await builds.queue.getJob(waiting)).toBeUndefined();
    expect(await builds.removeIfWaiting(waiting)).toBe(false);
    expect(await builds.removeIfWaiting(randomUUID())).toBe(false);

    // an active job: a worker holds it until released
    await builds.queue.drain();
    const activeId = randomUUID();
    let release: () => void = () => undefined;
    const held = new Promise<void>((res) => (release = res));
    const workerConn = createRedis(server.url, 'producers-worker');
    let startedResolve: () => void = () => undefined;
    const started = new Promise<void>((res) => (startedResolve = res));
    const worker = new Worker(
      QueueName.Build,
      async (job: Job) => {
        if (job.id === activeId) {
          startedResolve();
          await held;
        }
      },
      { connection: workerConn, prefix: QUEUE_PREFIX },
    );
    try {
      await builds.submit(buildData(activeId));
      await started;
      expect(await builds.removeIfWaiting(activeId)).toBe(false);
      expect(await (await builds.queue.getJob(activeId))?.getState()).toBe('active');
    } finally {
      release();
      await worker.close();
      workerConn.disconnect();
    }
  });

  it('removeIfWaiting removes a delayed job (a retry waiting for its backoff)', async () => {
    const queue = new Queue(QueueName.Build, { connection: conn, prefix: QUEUE_PREFIX });
    const id = randomUUID();
    await queue.add(JobName.Build, buildData(id), { jobId: id, delay: 60_000 });
    expect(await builds.removeIfWaiting(id)).toBe(true);
    expect(await queue.getJob(id)).toBeUndefined();
    await queue.close();
  });
});
