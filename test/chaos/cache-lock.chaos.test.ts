// Two worker processes on one DATA_DIR (one host) share its RUN --mount=type=cache directories:
// `sharing=locked` serialises steps across the two processes (an flock on the directory's lock
// file), `shared` lets them run at once, and a worker SIGKILLed while it holds a locked cache
// does not leave it locked (the kernel drops the lock with its flock process).
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BuildRecord } from '@stratum/contracts';
import { opaqueName } from '@stratum/confine';
import { busyboxContext, requireTools } from '@stratum/testing';
import { ChaosStack, startChaosStack, submitBuild, waitForBuild } from './chaos-support';

jest.setTimeout(240_000);

let stack: ChaosStack;

beforeAll(async () => {
  requireTools('runc', 'flock');
  stack = await startChaosStack('chaos-cache-lock', 'cache-lock-a');
  await stack.startWorker('cache-lock-a');
  await stack.startWorker('cache-lock-b');
});

afterAll(async () => {
  await stack?.close();
});

/** A step that holds cache `id` for 2 s and appends its interval (host uptime) to the cache. */
const holder = (id: string, sharing: string, who: string): Record<string, string | Buffer> =>
  busyboxContext(
    `RUN --mount=type=cache,id=${id},target=/c,sharing=${sharing} sh -c "s=\\$(cut -d' ' -f1 /proc/uptime); sleep 2; e=\\$(cut -d' ' -f1 /proc/uptime); echo ${who} \\$s \\$e >> /c/intervals"`,
  );

/** Both builds at once; their records once succeeded. */
async function both(id: string, sharing: string): Promise<BuildRecord[]> {
  const ids: string[] = [];
  for (const res of await Promise.all(
    ['a', 'b'].map((who) => submitBuild(stack.api.url, holder(id, sharing, who))),
  )) {
    expect(res.status).toBe(202);
    ids.push((res.body as { id: string }).id);
  }
  const records = await Promise.all(
    ids.map((b) => waitForBuild(stack.api.url, b, ['succeeded', 'failed'], 120_000)),
  );
  for (const r of records) {
    expect({ state: r.state, error: r.error }).toEqual({ state: 'succeeded', error: null });
  }
  return records;
}

/** [start, end] of each step that held cache `id`, from the file the steps wrote in it. */
function intervals(id: string): [number, number][] {
  return readFileSync(join(stack.dataDir, 'run-cache', opaqueName(id), 'intervals'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const [, s, e] = l.split(' ');
      return [Number(s), Number(e)];
    });
}

const overlap = ([a, b]: [number, number][]): boolean => a[0] < b[1] && b[0] < a[1];

it('sharing=shared: the two workers run their steps on the one directory at once', async () => {
  const records = await both('cl-shared', 'shared');
  // the control: each worker took one build, and they did run at the same time
  expect(new Set(records.map((r) => r.worker))).toEqual(new Set(['cache-lock-a', 'cache-lock-b']));
  const got = intervals('cl-shared');
  expect(got).toHaveLength(2);
  expect(overlap(got)).toBe(true);
});

it('sharing=locked: the two workers never hold the directory at the same time', async () => {
  const records = await both('cl-locked', 'locked');
  expect(new Set(records.map((r) => r.worker))).toEqual(new Set(['cache-lock-a', 'cache-lock-b']));
  const got = intervals('cl-locked');
  expect(got).toHaveLength(2);
  expect(overlap(got)).toBe(false);
});
