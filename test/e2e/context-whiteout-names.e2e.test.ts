// A build context is a plain archive, not a layer: files named like OCI whiteouts (`.wh.foo`,
// `.wh..wh..opq`) reach the build as ordinary files. A layer cannot hold such a file (it would
// delete `foo` when applied), so COPYing one into the image fails the build naming the file.
import 'reflect-metadata';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { contextTar, pollBuild } from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(90_000);

let stack: StackHandle;

async function build(files: Record<string, string>): Promise<BuildRecord> {
  const res = await request(stack.api.url)
    .post('/api/v1/builds')
    .set('content-type', 'application/x-tar')
    .send(await contextTar(files));
  expect(res.status).toBe(202);
  return pollBuild(stack.api.url, res.body.id as string, ['succeeded', 'failed'], 60_000);
}

beforeAll(async () => {
  stack = await startStack({ name: 'wh-names', env: { WORKER_SHUTDOWN_TIMEOUT_MS: '3000' } });
});

afterAll(async () => {
  await stack?.stop();
});

it('accepts a context holding .wh.* files and builds what does not copy them', async () => {
  const rec = await build({
    Dockerfile: 'FROM scratch\nCOPY keep.txt /\n',
    'keep.txt': 'kept',
    '.wh.keep.txt': 'an ordinary file',
    '.wh..wh..opq': 'an ordinary file too',
  });
  expect(rec.error ?? null).toBeNull();
  expect(rec.state).toBe('succeeded');
});

it('COPY of a .wh.* file fails the build naming the file (a layer cannot hold it)', async () => {
  const rec = await build({
    Dockerfile: 'FROM scratch\nCOPY app/ /app/\n',
    'app/main.txt': 'm',
    'app/.wh.main.txt': 'would delete main.txt if it became a layer entry',
  });
  expect(rec.state).toBe('failed');
  // The file was extracted (not taken for a whiteout and dropped): the snapshot names it.
  expect(rec.error).toMatch(/\.wh\.\* cannot be stored in a layer/);
  expect(rec.error).toContain('.wh.main.txt');
});
