// BuildProcessor against real Redis records: a job BullMQ hands to this worker again while its
// first delivery still runs (lock expired) waits for the first run instead of running beside
// it, and a build finished for good is not run again. The engine is a stand-in that records
// how many builds run at once (the real one needs runc; its behaviour is not under test here).
import { randomUUID } from 'node:crypto';
import { Job } from 'bullmq';
import { BuildEngine, BuildError, MAX_STORED_ERROR_LENGTH } from '@stratum/engine';
import { BuildJobData, BuildJobResult, BuildRecord, JobName } from '@stratum/contracts';
import { RedisKeys } from '@stratum/jobs';
import { PushSubmitter } from '@stratum/registry';
import { newBuildRecord, RecordStoreHandle, startRecordStore } from '@stratum/testing';
import { BuildProcessor } from './build.processor';

let store: RecordStoreHandle;
beforeAll(async () => {
  store = await startRecordStore('build-processor-int-test');
});
afterAll(() => store.stop());

const IMAGE = `sha256:${'a'.repeat(64)}`;

/** An engine whose builds last until released, counting how many run at once. */
function slowEngine(): {
  engine: BuildEngine;
  runs: () => number;
  maxAtOnce: () => number;
  release: () => void;
} {
  let running = 0;
  let max = 0;
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const engine = {
    build: async () => {
      runs++;
      running++;
      max = Math.max(max, running);
      await gate;
      running--;
      return { imageDigest: IMAGE, configDigest: IMAGE };
    },
  } as unknown as BuildEngine;
  return { engine, runs: () => runs, maxAtOnce: () => max, release };
}

async function newBuild(
  over: Partial<BuildRecord> = {},
): Promise<Job<BuildJobData, BuildJobResult, typeof JobName.Build>> {
  const id = randomUUID();
  await store.records.create(newBuildRecord({ id, tags: ['it/processor:1'], ...over }));
  const data: BuildJobData = {
    buildId: id,
    contextDigest: `sha256:${'c'.repeat(64)}`,
    dockerfile: 'Dockerfile',
    tags: ['it/processor:1'],
    buildArgs: {},
    target: null,
    noCache: false,
  };
  return { data, opts: { attempts: 3 }, attemptsMade: 0 } as unknown as Job<
    BuildJobData,
    BuildJobResult,
    typeof JobName.Build
  >;
}

it('a second delivery of a running build waits for the first, then finds it done', async () => {
  const e = slowEngine();
  const processor = new BuildProcessor(store.records, e.engine, {} as PushSubmitter);
  const job = await newBuild();
  const signal = new AbortController().signal;
  const first = processor.handle(job, signal);
  await new Promise((r) => setTimeout(r, 100));
  const second = processor.handle(job, signal);
  await new Promise((r) => setTimeout(r, 100));
  expect(e.runs()).toBe(1); // the second is waiting, not building
  e.release();
  expect(await first).toEqual({ buildId: job.data.buildId, state: 'succeeded', imageDigest: IMAGE });
  expect(await second).toEqual({ buildId: job.data.buildId, state: 'succeeded', imageDigest: IMAGE });
  expect(e.runs()).toBe(1);
  expect(e.maxAtOnce()).toBe(1);
  expect((await store.records.get(job.data.buildId))?.state).toBe('succeeded');
});

it('a build that failed or was cancelled for good is not run again', async () => {
  const e = slowEngine();
  e.release();
  const processor = new BuildProcessor(store.records, e.engine, {} as PushSubmitter);
  for (const state of ['failed', 'cancelled'] as const) {
    const job = await newBuild({ state, finishedAt: new Date().toISOString(), error: 'earlier' });
    expect(await processor.handle(job, new AbortController().signal)).toEqual({
      buildId: job.data.buildId,
      state,
      imageDigest: null,
    });
  }
  expect(e.runs()).toBe(0);
});

it('a build whose worker was lost twice fails for good, not handed to a third worker', async () => {
  const e = slowEngine();
  e.release();
  const processor = new BuildProcessor(store.records, e.engine, {} as PushSubmitter);
  // One lost worker: the build still runs (the kill -9 chaos case).
  const once = await newBuild({ state: 'running', attempts: 1 });
  Object.assign(once, { stalledCounter: 1 });
  expect((await processor.handle(once, new AbortController().signal)).state).toBe('succeeded');
  expect(e.runs()).toBe(1);

  const twice = await newBuild({ state: 'running', attempts: 2 });
  Object.assign(twice, { stalledCounter: 2 });
  await expect(processor.handle(twice, new AbortController().signal)).rejects.toThrow(
    expect.objectContaining({ name: 'UnrecoverableError' }) as Error,
  );
  expect(e.runs()).toBe(1); // not run again
  const record = await store.records.get(twice.data.buildId);
  expect(record?.state).toBe('failed');
  expect(record?.error).toMatch(/^worker lost 2 times running this build/);
});

it('stores a shortened error, keeping its start (the line) and its end (the exit code)', async () => {
  const command = 'x'.repeat(900_000);
  const engine = {
    build: () =>
      Promise.reject(
        new BuildError(`process "/bin/sh -c ${command}" did not complete successfully: exit code: 1`, 7),
      ),
  } as unknown as BuildEngine;
  const processor = new BuildProcessor(store.records, engine, {} as PushSubmitter);
  const job = await newBuild();
  await expect(processor.handle(job, new AbortController().signal)).rejects.toThrow(/exit code: 1$/);
  const record = await store.records.get(job.data.buildId);
  expect(record?.error?.length).toBeLessThanOrEqual(MAX_STORED_ERROR_LENGTH);
  expect(record?.error).toMatch(
    /^Dockerfile:7: process "\/bin\/sh -c x+ \[\.\.\. \d+ characters omitted \.\.\.\] x+" did not complete successfully: exit code: 1$/,
  );
  const events = await store.redis.xrange(RedisKeys.buildEvents(job.data.buildId), '-', '+');
  const errorEvent = events
    .map(([, f]) => JSON.parse(f[1]) as { type: string; message?: string })
    .find((ev) => ev.type === 'error');
  expect(errorEvent?.message).toBe(record?.error);
});
