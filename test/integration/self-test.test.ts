// The worker's start-up self-test build (selfTestBuild): a private engine builds a small image
// with the worker's runtime and user namespace, its stores on a tmpfs of its own; nothing of it
// stays mounted, on disk, in the worker's stores or in Redis, whether it succeeds or fails.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDockerfile } from '@stratum/dockerfile';
import { BuildEngine, SELF_TEST_DOCKERFILE, selfTestBuild } from '@stratum/engine';
import { makeTraversable } from '@stratum/runtime';
import { EngineTestBed, startEngineTestBed } from '@stratum/testing';

jest.setTimeout(120_000);

let bed: EngineTestBed;
let engine: BuildEngine;
let scratch: string;

beforeAll(async () => {
  bed = await startEngineTestBed('self-test');
  scratch = join(bed.work, 'scratch');
  await mkdir(join(scratch, 'jobs'), { recursive: true });
  // as the worker does for its steps' user namespace (see StepUserns)
  makeTraversable(join(scratch, 'jobs'));
  engine = bed.engine(scratch, { userns: { uid: 300000, gid: 300000, count: 65536 } });
});

afterAll(async () => {
  const mounts = bed?.mounts();
  await bed?.stop();
  expect(mounts).toEqual([]);
});

async function leftovers(dir: string): Promise<unknown> {
  const blobs: string[] = [];
  for await (const d of bed.blobs.list()) {
    blobs.push(d);
  }
  return {
    dir: existsSync(dir),
    mounts: bed.mounts(),
    blobs,
    repositories: await bed.repositories.listRepositories(),
    redisKeys: await bed.redis.dbsize(),
  };
}

const nothingLeft = { dir: false, mounts: [], blobs: [], repositories: [], redisKeys: 0 };

it('builds every step of its Dockerfile in a user namespace and leaves nothing behind', async () => {
  const dir = join(scratch, 'self-test');
  const result = await selfTestBuild(engine, dir);
  const steps = parseDockerfile(SELF_TEST_DOCKERFILE).stages[0].instructions.length;
  expect(result).toMatchObject({ steps, imageDigest: expect.stringMatching(/^sha256:[a-f0-9]{64}$/) });
  expect(await leftovers(dir)).toEqual(nothingLeft);
  // again, as a restarted worker does: built as the first time, and again nothing is left
  expect((await selfTestBuild(engine, dir))?.steps).toBe(steps);
  expect(await leftovers(dir)).toEqual(nothingLeft);
});

it('fails when its steps cannot run, and still leaves nothing behind', async () => {
  const dir = join(scratch, 'self-test-broken');
  // a "busybox" that is not one: the RUN steps' sh exits 1
  const fake = join(bed.work, 'false');
  await copyFile('/bin/false', fake);
  await expect(selfTestBuild(engine, dir, { busybox: fake })).rejects.toThrow(
    /Dockerfile:6: process .* did not complete successfully: exit code: 1/,
  );
  expect(await leftovers(dir)).toEqual(nothingLeft);
});

it('is skipped without busybox', async () => {
  await expect(
    selfTestBuild(engine, join(scratch, 'self-test-none'), { busybox: '/nonexistent' }),
  ).resolves.toBeNull();
});

it('leftovers of a crashed self-test (mounts, files) are cleared before it builds', async () => {
  const dir = join(scratch, 'self-test');
  await mkdir(join(dir, 'stale'), { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', join(dir, 'stale')]);
  expect((await selfTestBuild(engine, dir))?.steps).toBeGreaterThan(0);
  expect(await leftovers(dir)).toEqual(nothingLeft);
});
