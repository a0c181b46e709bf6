import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import request from 'supertest';
import { PushRecord } from '@stratum/contracts';
import { RegistryClient } from '@stratum/registry';
import { freePort, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { WorkerModule } from '../../workers/builder/src/worker.module';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import {
  DistributionHandle,
  makeImage,
  OciImageParts,
  sha,
  skopeo,
  startDistribution,
  writeOciLayout,
} from './registry-fixtures';

// Push jobs end to end: the real API enqueues, the real worker module (in process) runs the push
// handler, a real CNCF Distribution registry with htpasswd auth receives the image; skopeo
// inspects it there. Also: our registry as a target (retag), cross-repository mounts, refused
// credentials (final, no retry), an unreachable registry (retried with backoff, then failed),
// and chunked uploads by the registry client.

describe('push jobs (e2e, worker -> Distribution)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let api: ApiServerHandle;
  let worker: INestApplicationContext;
  let dist: DistributionHandle;
  let http: ReturnType<typeof request>;
  let image: OciImageParts;
  const creds = { username: 'pusher', password: 'push-password' };
  const SECRET = 'push-e2e-secret-of-at-least-32-characters';

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-push-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-push-work-'));
    dist = await startDistribution({ [creds.username]: creds.password });
    const config = testConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      JOB_ATTEMPTS: '2',
      WORKER_ID: 'push-e2e',
      // Keys the encryption of the credentials a push request brings (refused without it).
      AUTH_SECRET: SECRET,
    });
    api = await startApiServer(config);
    worker = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), { logger: ['error'] });
    await worker.init();
    http = request(api.url);
    image = await makeImage(work, { 'app/hello.txt': 'pushed by a stratum job\n' });
    await writeOciLayout(join(work, 'layout'), 'v1', [image]);
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${api.url.replace('http://', '')}/ns/app:v1`,
    );
  }, 90_000);

  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await dist?.stop();
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  async function waitForPush(id: string, timeoutMs = 60_000): Promise<PushRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await http.get(`/api/v1/pushes/${id}`).expect(200);
      const record = res.body as PushRecord;
      if (record.state === 'succeeded' || record.state === 'failed') {
        return record;
      }
      if (Date.now() > deadline) {
        throw new Error(`push ${id} still ${record.state}: ${JSON.stringify(record)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('pushes to our registry and to Distribution; skopeo sees the same digest there', async () => {
    const res = await http
      .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/push`)
      .send({
        targets: ['ns/copy:v2', `${dist.host}/team/app:v1`, `${dist.host}/team/other:v1`],
        credentials: creds,
      })
      .expect(202);
    expect(res.body).toMatchObject({
      state: 'queued',
      manifestDigest: image.digest,
      url: `/api/v1/pushes/${res.body.id}`,
    });
    const done = await waitForPush(res.body.id as string);
    expect(done.state).toBe('succeeded');
    expect(done.attempts).toBe(1);
    expect(done.targets.map((t) => [t.target, t.state])).toEqual([
      ['ns/copy:v2', 'succeeded'],
      [`${dist.host}/team/app:v1`, 'succeeded'],
      [`${dist.host}/team/other:v1`, 'succeeded'],
    ]);
    expect(done.targets[0].blobs.linked).toBe(2);
    expect(done.targets[1].blobs.uploaded).toBe(2);
    expect(done.targets[2].blobs.mounted).toBe(2);

    const local = await http.head('/v2/ns/copy/manifests/v2').expect(200);
    expect(local.headers['docker-content-digest']).toBe(image.digest);
    for (const repo of ['team/app', 'team/other']) {
      const inspected = JSON.parse(
        await skopeo(
          'inspect',
          '--tls-verify=false',
          '--creds',
          `${creds.username}:${creds.password}`,
          `docker://${dist.host}/${repo}:v1`,
        ),
      ) as { Digest: string; Layers: string[] };
      expect(inspected.Digest).toBe(image.digest);
      expect(inspected.Layers).toEqual([sha(image.layer)]);
    }
    // Credentials are dropped once the push is over.
    expect(await redisKeys(`stratum:push:${done.id}:credentials`)).toEqual([]);

    // Pushing again finds everything there.
    const again = await http
      .post(`/api/v1/images/${encodeURIComponent(`ns/app@${image.digest}`)}/push`)
      .send({ targets: [`${dist.host}/team/app:again`], credentials: creds })
      .expect(202);
    const second = await waitForPush(again.body.id as string);
    expect(second.targets[0].blobs).toMatchObject({ exists: 2, uploaded: 0 });
  }, 120_000);

  it('without AUTH_SECRET, a push bringing credentials is refused (400 naming AUTH_SECRET); nothing is kept', async () => {
    const keyless = await startApiServer(
      testConfig({ REDIS_URL: redis.url, DATA_DIR: dataDir, WORKER_ID: 'push-e2e-keyless' }),
    );
    try {
      const before = (await redisKeys('stratum:push:*')).sort();
      const res = await request(keyless.url)
        .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/push`)
        .send({ targets: [`${dist.host}/team/keyless:v1`], credentials: creds })
        .expect(400);
      expect(res.body.code).toBe('BAD_REQUEST');
      expect(res.body.message).toMatch(/credentials.*AUTH_SECRET is not set/);
      expect((await redisKeys('stratum:push:*')).sort()).toEqual(before);
      // Without credentials the same push is accepted (REGISTRY_CREDENTIALS would serve there).
      await request(keyless.url)
        .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/push`)
        .send({ targets: ['ns/keyless:v1'] })
        .expect(202);
    } finally {
      await keyless.close();
    }
  }, 60_000);

  it('refused credentials fail the push at once (no retry); nothing is tagged there', async () => {
    const res = await http
      .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/push`)
      .send({
        targets: [`${dist.host}/team/denied:v1`],
        credentials: { username: 'pusher', password: 'wrong' },
      })
      .expect(202);
    const done = await waitForPush(res.body.id as string);
    expect(done.state).toBe('failed');
    expect(done.attempts).toBe(1);
    expect(done.error).toMatch(/401|UNAUTHORIZED/);
    await expect(
      skopeo(
        'inspect',
        '--raw',
        '--tls-verify=false',
        '--creds',
        'pusher:push-password',
        `docker://${dist.host}/team/denied:v1`,
      ),
    ).rejects.toThrow();
  }, 60_000);

  it('an unreachable registry is retried with backoff, then the push fails', async () => {
    const port = await freePort();
    const res = await http
      .post(`/api/v1/images/${encodeURIComponent('ns/app:v1')}/push`)
      .send({ targets: [`127.0.0.1:${port}/nowhere/app:v1`] })
      .expect(202);
    const done = await waitForPush(res.body.id as string, 60_000);
    expect(done.state).toBe('failed');
    expect(done.attempts).toBe(2);
    expect(done.targets[0].error).toMatch(/ECONNREFUSED|fetch failed/);
  }, 90_000);

  it('answers 404 for an unknown image or push, 400 for a bad target', async () => {
    expect(
      (
        await http
          .post('/api/v1/images/no%2Fsuch:v1/push')
          .send({ targets: ['x:y'] })
          .expect(404)
      ).body.code,
    ).toBe('IMAGE_UNKNOWN');
    await http
      .post('/api/v1/images/ns%2Fapp:v1/push')
      .send({ targets: ['Bad Target'] })
      .expect(400);
    await http.post('/api/v1/images/ns%2Fapp:v1/push').send({ targets: [] }).expect(400);
    await http.get('/api/v1/pushes/00000000-0000-4000-8000-000000000000').expect(404);
  });

  it('the registry client uploads in chunks and verifies what it downloads', async () => {
    const client = new RegistryClient({
      registry: dist.host,
      insecure: true,
      credentials: creds,
      chunkSize: 64 * 1024,
    });
    const blob = randomBytes(200 * 1024 + 17);
    const digest = sha(blob);
    expect(await client.hasBlob('chunks/test', digest)).toBe(false);
    await client.uploadBlob('chunks/test', digest, blob.length, async (range) =>
      Readable.from([range === undefined ? blob : blob.subarray(range.start, range.end + 1)]),
    );
    expect(await client.hasBlob('chunks/test', digest)).toBe(true);
    const got = await client.getBlob('chunks/test', digest);
    const chunks: Buffer[] = [];
    for await (const c of got.stream) {
      chunks.push(c as Buffer);
    }
    expect(Buffer.concat(chunks)).toEqual(blob);
    await expect(client.getBlob('chunks/test', sha('other'))).rejects.toThrow(/BLOB_UNKNOWN|404/);

    // A registry answering other bytes than the digest names: the stream fails instead of ending.
    const liar = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end(req.url === '/v2/' ? '{}' : 'not the bytes you asked for');
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
    const { port } = liar.address() as AddressInfo;
    try {
      const lying = new RegistryClient({ registry: `127.0.0.1:${port}`, insecure: true });
      const bad = await lying.getBlob('x/y', digest);
      await expect(
        (async () => {
          for await (const _ of bad.stream) {
            // drain
          }
        })(),
      ).rejects.toThrow(/DIGEST_INVALID|arrived as/);
    } finally {
      liar.close();
    }
  }, 60_000);

  async function redisKeys(pattern: string): Promise<string[]> {
    const { Redis } = await import('ioredis');
    const r = new Redis(redis.url);
    try {
      return await r.keys(pattern);
    } finally {
      r.disconnect();
    }
  }
});
