// A build with push=true: the image lands in our registry and is copied to another registry
// (a real CNCF Distribution started here) by the push job, as `docker buildx build --push` does.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, PushRecord } from '@stratum/contracts';
import { pushIdForBuild } from '@stratum/registry';
import { busyboxContext, contextTar } from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';
import { DistributionHandle, isolatedTool, skopeo, startDistribution } from './registry-fixtures';

jest.setTimeout(90_000);

let stack: StackHandle;
let distribution: DistributionHandle;

beforeAll(async () => {
  distribution = await startDistribution();
  stack = await startStack({ name: 'build-push', env: { JOB_ATTEMPTS: '2' } });
});

afterAll(async () => {
  try {
    await stack?.stop();
  } finally {
    await distribution?.stop();
  }
});

async function submit(query: Record<string, string | string[]>): Promise<request.Response> {
  return request(stack.api.url)
    .post('/api/v1/builds')
    .query(query)
    .set('content-type', 'application/x-tar')
    .send(await contextTar(busyboxContext('RUN echo pushed > /hello\nCMD ["cat", "/hello"]\n')));
}

async function poll<T>(url: string, done: (body: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await request(stack.api.url).get(url)).body as T;
    if (done(body) || Date.now() > deadline) {
      return body;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

it('refuses a tag naming another registry without push=true, naming the tag', async () => {
  const res = await submit({ t: `${distribution.host}/team/app:1` });
  expect(res.status).toBe(400);
  expect(res.body.message).toContain(`${distribution.host}/team/app:1`);
  expect(res.body.message).toMatch(/push=true/);
});

it('builds, keeps the image in our registry and pushes it to the other registry', async () => {
  const res = await submit({ t: ['team/app:1', `${distribution.host}/team/app:1`], push: 'true' });
  expect(res.status).toBe(202);
  const build = await poll<BuildRecord>(
    `/api/v1/builds/${res.body.id}`,
    (b) => ['succeeded', 'failed'].includes(b.state) && b.pushId !== null && b.pushId !== undefined,
  );
  expect(build.state).toBe('succeeded');
  // Derived from the build's id: a retried build job would submit this same push, not a second one.
  expect(build.pushId).toBe(pushIdForBuild(build.id));
  const push = await poll<PushRecord>(`/api/v1/pushes/${build.pushId}`, (p) =>
    ['succeeded', 'failed'].includes(p.state),
  );
  expect(push.state).toBe('succeeded');
  // Same manifest in ours and in theirs.
  const ours = await request(stack.api.url).head('/v2/team/app/manifests/1');
  expect(ours.headers['docker-content-digest']).toBe(build.imageDigest);
  const theirs = JSON.parse(
    await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${distribution.host}/team/app:1`),
  ) as { layers: { digest: string }[] };
  const digestThere = (
    await skopeo(
      'inspect',
      '--tls-verify=false',
      '--format',
      '{{.Digest}}',
      `docker://${distribution.host}/team/app:1`,
    )
  ).trim();
  expect(digestThere).toBe(build.imageDigest);
  expect(theirs.layers.length).toBeGreaterThanOrEqual(2);
});

it('builds FROM an image in the other registry, pulled through the registry client', async () => {
  // The previous test pushed team/app:1 there; a fresh repository name shows it is pulled, not reused locally.
  const res = await request(stack.api.url)
    .post('/api/v1/builds')
    .query({ t: 'team/child:1' })
    .set('content-type', 'application/x-tar')
    .send(
      await contextTar({
        Dockerfile: `FROM ${distribution.host}/team/app:1\nRUN cat /hello > /copied\n`,
      }),
    );
  expect(res.status).toBe(202);
  const build = await poll<BuildRecord>(`/api/v1/builds/${res.body.id}`, (b) =>
    ['succeeded', 'failed'].includes(b.state),
  );
  expect(build.error).toBeNull();
  expect(build.state).toBe('succeeded');
  const image = (await request(stack.api.url).get(`/api/v1/images/${encodeURIComponent('team/child:1')}`))
    .body as {
    layers: unknown[];
  };
  expect(image.layers.length).toBeGreaterThanOrEqual(3);
});

it('fails FROM an image the other registry does not have, naming it and the line', async () => {
  const res = await request(stack.api.url)
    .post('/api/v1/builds')
    .set('content-type', 'application/x-tar')
    .send(await contextTar({ Dockerfile: `FROM ${distribution.host}/team/missing:1\nRUN true\n` }));
  const build = await poll<BuildRecord>(`/api/v1/builds/${res.body.id}`, (b) =>
    ['succeeded', 'failed'].includes(b.state),
  );
  expect(build.state).toBe('failed');
  expect(build.error).toContain('team/missing:1');
  expect(build.error).toMatch(/Dockerfile:1/);
});

it('podman pulls and runs an image Stratum built', async () => {
  // A private podman store (vfs: no mounts) so the host's images are not touched.
  const store = mkdtempSync(join(tmpdir(), 'stratum-e2e-podman-'));
  const podman = isolatedTool('podman', store, [
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
    '--runtime',
    '/usr/sbin/runc',
  ]);
  const host = new URL(stack.api.url).host;
  try {
    const ref = `${host}/team/app:1`; // built by the push test above: CMD ["cat", "/hello"]
    await podman('pull', '--tls-verify=false', ref);
    // This host refuses runc raising RLIMIT_NOFILE and RLIMIT_NPROC to podman's defaults.
    const out = await podman(
      'run',
      '--rm',
      '--network',
      'none',
      '--ulimit',
      'nofile=1024:1024',
      '--ulimit',
      'nproc=1024:1024',
      ref,
    );
    expect(out.trim()).toBe('pushed');
  } finally {
    await podman('rmi', '-a', '-f').catch(() => undefined);
    rmSync(store, { recursive: true, force: true });
  }
});
