// Stateless API replicas (issue 20): two API processes, each with its own DATA_DIR (two hosts),
// on one redis-server and one S3 (s3rver): a chunked blob upload started on one replica
// continues and completes on the other, and skopeo pulls the image through either. The
// start-up store check: a third API, and a worker, configured with STORAGE=fs (a store of their
// own) refuse to start, naming the store they do not share. Run `npm run build` first.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  freePort,
  RedisServerHandle,
  S3rverProcess,
  ServiceProcessHandle,
  startApiProcess,
  startRedisServer,
  startWorkerProcess,
} from '@stratum/testing';
import { makeImage, OCI_MANIFEST, OciImageParts, sha, skopeo, writeOciLayout } from './registry-fixtures';

jest.setTimeout(180_000);

let redis: RedisServerHandle;
let s3: S3rverProcess;
let work: string;
const replicas: { url: string; host: string; process: ServiceProcessHandle }[] = [];
let image: OciImageParts;

function sharedEnv(): Record<string, string> {
  return { REDIS_URL: redis.url, ...s3.env('replicas'), MAINTENANCE_SCHEDULE: 'off' };
}

beforeAll(async () => {
  redis = await startRedisServer();
  s3 = new S3rverProcess(await freePort());
  await s3.start();
  work = await mkdtemp(join(tmpdir(), 'stratum-replicas-'));
  for (const name of ['a', 'b']) {
    const port = await freePort();
    const p = await startApiProcess({
      ...sharedEnv(),
      // Replica b redirects blob GETs to presigned S3 URLs (skopeo follows them below).
      ...(name === 'b' ? { S3_REDIRECT_ENDPOINT: s3.endpoint } : {}),
      DATA_DIR: join(work, `host-${name}`),
      API_PORT: String(port),
    });
    replicas.push({ url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, process: p });
  }
  image = await makeImage(work, { 'etc/replica.txt': 'bytes that crossed replicas\n'.repeat(5000) });
});

afterAll(async () => {
  for (const r of replicas) {
    await r.process.stop(10_000);
  }
  await s3?.destroy();
  await redis?.stop();
  if (work !== undefined) {
    await rm(work, { recursive: true, force: true });
  }
});

async function send(
  url: string,
  method: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, { method, body, headers });
}

it('a chunked upload moves between two API replicas and skopeo pulls it through either', async () => {
  const [a, b] = replicas;
  const layer = image.layer;
  const cut1 = Math.floor(layer.length / 3);
  const cut2 = Math.floor((2 * layer.length) / 3);

  const start = await send(`${a.url}/v2/multi/app/blobs/uploads/`, 'POST');
  expect(start.status).toBe(202);
  const location = start.headers.get('location')!;
  expect(location).toMatch(/^\/v2\/multi\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);

  // First chunk on A, status and the second chunk on B, the last chunk and the PUT on A.
  const c1 = await send(`${a.url}${location}`, 'PATCH', layer.subarray(0, cut1), {
    'content-type': 'application/octet-stream',
    'content-range': `0-${cut1 - 1}`,
  });
  expect(c1.status).toBe(202);
  const status = await send(`${b.url}${location}`, 'GET');
  expect(status.status).toBe(204);
  expect(status.headers.get('range')).toBe(`0-${cut1 - 1}`);
  const c2 = await send(`${b.url}${location}`, 'PATCH', layer.subarray(cut1, cut2), {
    'content-type': 'application/octet-stream',
    'content-range': `${cut1}-${cut2 - 1}`,
  });
  expect(c2.status).toBe(202);
  const put = await send(`${a.url}${location}?digest=${sha(layer)}`, 'PUT', layer.subarray(cut2), {
    'content-type': 'application/octet-stream',
  });
  expect(put.status).toBe(201);

  // Config (monolithic) on B, manifest on A: the image is whole on both.
  expect(
    (
      await send(`${b.url}/v2/multi/app/blobs/uploads/?digest=${sha(image.config)}`, 'POST', image.config, {
        'content-type': 'application/octet-stream',
      })
    ).status,
  ).toBe(201);
  expect(
    (
      await send(`${a.url}/v2/multi/app/manifests/v1`, 'PUT', image.manifest, {
        'content-type': OCI_MANIFEST,
      })
    ).status,
  ).toBe(201);

  // b answers a whole-blob GET with a redirect to object storage; a ranged GET it serves itself.
  const redirected = await fetch(`${b.url}/v2/multi/app/blobs/${sha(layer)}`, { redirect: 'manual' });
  expect(redirected.status).toBe(307);
  expect(redirected.headers.get('location')).toMatch(new RegExp(`^${s3.endpoint}/replicas/blobs/sha256/`));
  expect(redirected.headers.get('docker-content-digest')).toBe(sha(layer));
  expect(
    (await send(`${b.url}/v2/multi/app/blobs/${sha(layer)}`, 'GET', undefined, { range: 'bytes=0-9' }))
      .status,
  ).toBe(206);
  for (const r of replicas) {
    const blob = await send(`${r.url}/v2/multi/app/blobs/${sha(layer)}`, 'GET');
    expect(blob.status).toBe(200);
    expect(sha(Buffer.from(await blob.arrayBuffer()))).toBe(sha(layer));
    const out = join(work, `pulled-${r.host.replace(':', '-')}`);
    await skopeo('copy', '--src-tls-verify=false', `docker://${r.host}/multi/app:v1`, `oci:${out}:v1`);
    expect(await readFile(join(out, 'blobs', 'sha256', sha(layer).slice(7)))).toEqual(layer);
  }

  // Nothing of the upload is left in the bucket or on either replica's disk.
  const probe = await send(`${b.url}${location}`, 'GET');
  expect(probe.status).toBe(404);
});

it('a skopeo push through one replica is pulled through the other', async () => {
  const [a, b] = replicas;
  const layout = join(work, 'layout');
  await writeOciLayout(layout, 'v2', [image]);
  await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:v2`, `docker://${a.host}/multi/pushed:v2`);
  const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${b.host}/multi/pushed:v2`);
  expect(sha(raw)).toBe(image.digest);
});

it('an API or a worker that does not see the shared store refuses to start, naming it', async () => {
  const own = join(work, 'host-c');
  const port = await freePort();
  const api = await startApiProcess(
    { REDIS_URL: redis.url, DATA_DIR: own, API_PORT: String(port), MAINTENANCE_SCHEDULE: 'off' },
    { waitReady: false },
  );
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    api.exited(),
    new Promise<'running'>((r) => (timer = setTimeout(() => r('running'), 30_000))),
  ]);
  clearTimeout(timer);
  await api.stop(1000);
  expect(code).not.toBe('running');
  expect(code).not.toBe(0);
  expect(api.output()).toContain('does not see the store the others use');
  expect(api.output()).toContain(`fs:${join(own, 'store')}`);
  expect(api.output()).toContain(`s3:${s3.endpoint}/replicas`);
  expect(api.output()).not.toContain('stratum-api listening');

  await expect(
    startWorkerProcess({ REDIS_URL: redis.url, DATA_DIR: own, WORKER_ID: 'lonely' }, 30_000),
  ).rejects.toThrow(/does not see the store the others use/);

  // The refused processes left no probe behind: only the two replicas' entries are live.
  const r = new Redis(redis.url);
  try {
    const fields = await r.hkeys('stratum:store-probes');
    expect(fields.filter((f) => f.startsWith('api:')).length).toBe(2);
    expect(fields.some((f) => f.startsWith('worker:lonely'))).toBe(false);
  } finally {
    r.disconnect();
  }
});
