import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DockerdHandle,
  freePort,
  RedisServerHandle,
  S3rverProcess,
  startDockerd,
  startRedisServer,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { isolatedTool, makeImage, OciImageParts, sha, skopeo, writeOciLayout } from './registry-fixtures';

// Issue 20 item 6: with S3 redirects on, every whole-blob GET answers 307 to a presigned URL on
// object storage (s3rver here), so the bytes never pass through the API. podman and Docker
// Engine (a private dockerd: vfs, no iptables/bridge) pull an image that way: their pull
// succeeds with the right digest and the API's blob bytes counter does not move.
// (S3_REDIRECT=on because s3rver listens on loopback, which `auto` never redirects to.)

jest.setTimeout(240_000);

let redis: RedisServerHandle;
let s3: S3rverProcess;
let api: ApiServerHandle;
let dataDir: string;
let work: string;
let host: string;
let image: OciImageParts;

/** Bytes of blob bodies the API itself has sent (its Prometheus counter). */
async function apiBlobBytes(): Promise<number> {
  const text = await (await fetch(`${api.url}/metrics`)).text();
  const m = /^stratum_registry_blob_pulled_bytes_total(?:\{[^}]*\})? (\d+)/m.exec(text);
  if (m === null) {
    throw new Error(`no stratum_registry_blob_pulled_bytes_total in /metrics:\n${text.slice(0, 2000)}`);
  }
  return Number(m[1]);
}

beforeAll(async () => {
  redis = await startRedisServer();
  s3 = new S3rverProcess(await freePort());
  await s3.start();
  dataDir = await mkdtemp(join(tmpdir(), 'stratum-redirect-clients-'));
  work = await mkdtemp(join(tmpdir(), 'stratum-redirect-work-'));
  api = await startApiServer(
    testConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      ...s3.env('redirect-clients'),
      S3_REDIRECT: 'on',
    }),
  );
  host = api.url.replace('http://', '');
  image = await makeImage(work, { 'srv/hello.txt': 'pulled from S3, not through the API\n' });
  await writeOciLayout(join(work, 'layout'), 'v1', [image]);
  await skopeo(
    'copy',
    '--dest-tls-verify=false',
    `oci:${join(work, 'layout')}:v1`,
    `docker://${host}/team/hello:v1`,
  );
});

afterAll(async () => {
  await api?.close();
  await s3?.destroy();
  await redis?.stop();
  for (const dir of [dataDir, work]) {
    if (dir !== undefined) {
      await rm(dir, { recursive: true, force: true });
    }
  }
});

it('answers a whole-blob GET with 307 to a presigned S3 URL holding the bytes; a ranged GET is served', async () => {
  const layer = sha(image.layer);
  const res = await fetch(`${api.url}/v2/team/hello/blobs/${layer}`, { redirect: 'manual' });
  expect(res.status).toBe(307);
  expect(res.headers.get('docker-content-digest')).toBe(layer);
  const location = res.headers.get('location')!;
  expect(location.startsWith(`${s3.endpoint}/`)).toBe(true);
  expect(location).toContain('X-Amz-Signature=');
  const bytes = Buffer.from(await (await fetch(location)).arrayBuffer());
  expect(sha(bytes)).toBe(layer);
  const ranged = await fetch(`${api.url}/v2/team/hello/blobs/${layer}`, { headers: { range: 'bytes=0-9' } });
  expect(ranged.status).toBe(206);
  expect(Buffer.from(await ranged.arrayBuffer())).toEqual(image.layer.subarray(0, 10));
});

it('podman pulls through the redirect: right digest, no blob byte through the API', async () => {
  const before = await apiBlobBytes();
  const podman = isolatedTool('podman', join(work, 'podman'), [], 120_000);
  try {
    await podman('pull', '--tls-verify=false', `${host}/team/hello:v1`);
    const digest = (
      await podman('image', 'inspect', '--format', '{{.Digest}}', `${host}/team/hello:v1`)
    ).trim();
    expect(digest).toBe(image.digest);
  } finally {
    await podman('rmi', '-a', '-f').catch(() => '');
  }
  expect(await apiBlobBytes()).toBe(before);
});

it('docker pulls through the redirect: right digest and layers, no blob byte through the API', async () => {
  const before = await apiBlobBytes();
  let dockerd: DockerdHandle | undefined;
  try {
    dockerd = await startDockerd(host);
    const out = await dockerd.docker('pull', `${host}/team/hello:v1`);
    expect(out).toContain(`Digest: ${image.digest}`);
    const [inspected] = JSON.parse(await dockerd.docker('image', 'inspect', `${host}/team/hello:v1`)) as {
      RepoDigests: string[];
      RootFS: { Layers: string[] };
    }[];
    expect(inspected.RepoDigests).toEqual([`${host}/team/hello@${image.digest}`]);
    const config = JSON.parse(image.config.toString()) as { rootfs: { diff_ids: string[] } };
    expect(inspected.RootFS.Layers).toEqual(config.rootfs.diff_ids);
  } finally {
    await dockerd?.stop();
  }
  expect(await apiBlobBytes()).toBe(before);
});
