// BuildEventSink against a real Redis: step changes reported close together go out as one
// record update (one script call, one read for a follower), in the order reported, a log
// between them keeps its place, and flush() writes what waits at once.
import { BuildEvent, StepRecord, StepStatus } from '@stratum/contracts';
import { RedisKeys } from '@stratum/jobs';
import { newBuildRecord, RecordStoreHandle, startRecordStore } from '@stratum/testing';
import { BuildEventSink } from './build-event-sink';

let store: RecordStoreHandle;
beforeAll(async () => {
  store = await startRecordStore('build-event-sink-int-test');
});
afterAll(() => store.stop());

/** Script calls (EVAL/EVALSHA) the server has answered so far. */
async function scriptCalls(): Promise<number> {
  const info = await store.redis.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_(eval|evalsha):calls=(\d+)/gm)) {
    n += Number(m[2]);
  }
  return n;
}

async function events(id: string): Promise<BuildEvent[]> {
  const entries = await store.redis.xrange(RedisKeys.buildEvents(id), '-', '+');
  return entries.map(([, fields]) => JSON.parse(fields[1]) as BuildEvent);
}

const step = (index: number, status: StepStatus): StepRecord => ({
  index,
  name: `step ${index}`,
  status,
  startedAt: null,
  finishedAt: null,
  durationMs: null,
  layerSize: null,
});

async function newRecord(): Promise<string> {
  const record = newBuildRecord();
  await store.records.create(record);
  return record.id;
}

it('step changes reported within the window are one write, in the order reported', async () => {
  const id = await newRecord();
  const sink = new BuildEventSink(store.records, id, 'w1', 200);
  const before = await scriptCalls();
  for (let i = 0; i < 5; i++) {
    await sink.step(step(i, StepStatus.Cached));
    await new Promise((r) => setTimeout(r, 5)); // as cached steps come: one Redis round trip apart
  }
  await sink.step(step(2, StepStatus.Done)); // a later change of the same step wins
  await sink.flush();
  expect((await scriptCalls()) - before).toBe(1);
  const got = (await events(id)).flatMap((e) => (e.type === 'step' ? [e.step] : []));
  expect(got.map((s) => `${s.index}:${s.status}`)).toEqual([
    '0:cached',
    '1:cached',
    '2:cached',
    '3:cached',
    '4:cached',
    '2:done',
  ]);
  expect(got.every((s) => s.worker === 'w1')).toBe(true);
  const record = await store.records.get(id);
  expect(record?.steps.map((s) => s.status)).toEqual(['cached', 'cached', 'done', 'cached', 'cached']);
});

it('a change is written after the window without a flush (a follower sees it)', async () => {
  const id = await newRecord();
  const sink = new BuildEventSink(store.records, id, undefined, 100);
  await sink.step(step(0, StepStatus.Running));
  expect((await store.records.get(id))?.steps).toEqual([]); // still gathering
  const until = Date.now() + 5000;
  while ((await store.records.get(id))?.steps.length === 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
  }
  expect((await store.records.get(id))?.steps.map((s) => s.status)).toEqual(['running']);
  await sink.flush();
});

it('a log closes the batch before it and keeps its place; flush writes at once', async () => {
  const id = await newRecord();
  const sink = new BuildEventSink(store.records, id, undefined, 60_000); // a window no test waits out
  const started = Date.now();
  await sink.step(step(0, StepStatus.Running));
  sink.log(0, 'stdout', 'hello\n');
  await sink.step(step(0, StepStatus.Done));
  await sink.flush();
  expect(Date.now() - started).toBeLessThan(10_000);
  const kinds = (await events(id)).map((e) =>
    e.type === 'step' ? `step ${e.step.status}` : e.type === 'log' ? `log ${e.text}` : e.type,
  );
  expect(kinds).toEqual(['step running', 'log hello\n', 'step done']);
});
