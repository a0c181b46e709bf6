import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { MediaType } from '@stratum/oci';
import S3rver from 's3rver';
import { BlobDigest, BlobStore, createStorage, Storage, UploadPartStore } from '@stratum/storage';
import type { StorageConfig } from '@stratum/config';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { RegistryError, toRegistryError } from './registry-error';
import { RegistryService } from './registry.service';
import { UploadSessionStore } from './upload-session-store';

const sha = (b: Buffer | string): BlobDigest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) {
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function expectCode(p: Promise<unknown>, code: string): Promise<RegistryError> {
  try {
    await p;
  } catch (err) {
    const mapped = toRegistryError(err);
    expect(mapped).toBeInstanceOf(RegistryError);
    expect(mapped?.code).toBe(code);
    return mapped!;
  }
  throw new Error(`expected ${code}`);
}

async function uploadIds(parts: UploadPartStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const u of parts.listUploads()) {
    ids.push(u.id);
  }
  return ids;
}

// The same behaviour over both storage backends: the fs store and S3 (s3rver, in-process).
describe.each(['fs', 's3'] as const)('RegistryService (%s store, real redis)', (backend) => {
  let redisServer: RedisServerHandle;
  let redis: Redis;
  let dir: string;
  let parts: UploadPartStore;
  let storageConfig: StorageConfig;
  let registry: RegistryService;
  let blobs: BlobStore;
  let s3: { server: S3rver; dir: string; endpoint: string } | null = null;
  let bucketSeq = 0;

  beforeAll(async () => {
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
    if (backend === 's3') {
      const s3dir = await mkdtemp(join(tmpdir(), 'stratum-registry-s3-'));
      const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: s3dir });
      const { port } = await server.run();
      s3 = { server, dir: s3dir, endpoint: `http://127.0.0.1:${port}` };
    }
  });
  afterAll(async () => {
    redis.disconnect();
    await redisServer.stop();
    if (s3 !== null) {
      await s3.server.close();
      await rm(s3.dir, { recursive: true, force: true });
    }
  });
  beforeEach(async () => {
    await redis.flushall();
    dir = await mkdtemp(join(tmpdir(), 'stratum-registry-'));
    storageConfig =
      s3 === null
        ? { kind: 'fs', root: join(dir, 'store') }
        : {
            kind: 's3',
            endpoint: s3.endpoint,
            bucket: `registry-${process.pid}-${++bucketSeq}`,
            accessKey: 'S3RVER',
            secretKey: 'S3RVER',
            region: 'us-east-1',
          };
    const storage: Storage = await createStorage(storageConfig);
    blobs = storage.blobs;
    parts = storage.uploads;
    const uploads = new UploadSessionStore(redis, parts, 3600);
    registry = new RegistryService(blobs, storage.repositories, uploads, redis, {
      maxPageSize: 50,
    });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function pushBlob(repo: string, content: string): Promise<{ digest: BlobDigest; size: number }> {
    const r = await registry.startUpload(repo, {
      digest: sha(content),
      body: Readable.from([Buffer.from(content)]),
    });
    expect(r.kind).toBe('created');
    return { digest: sha(content), size: Buffer.byteLength(content) };
  }

  async function pushImage(
    repo: string,
    tag: string,
    layer = 'layer-bytes',
  ): Promise<{ digest: BlobDigest; bytes: Buffer }> {
    const config = await pushBlob(
      repo,
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
    );
    const l = await pushBlob(repo, layer);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, ...config },
        layers: [{ mediaType: MediaType.OciLayerTarGzip, ...l }],
      }),
    );
    const r = await registry.putManifest(repo, tag, manifest, MediaType.OciManifest);
    return { digest: r.digest, bytes: manifest };
  }

  it('monolithic upload, stat, get, range, mount and delete', async () => {
    const { digest, size } = await pushBlob('a/b/c', 'hello world');
    expect(await registry.statBlob('a/b/c', digest)).toEqual({ digest, size });
    expect(await text((await registry.getBlob('a/b/c', digest)).stream)).toBe('hello world');
    const part = await registry.getBlob('a/b/c', digest, 'bytes=6-');
    expect(part.range).toEqual({ start: 6, end: 10 });
    expect(await text(part.stream)).toBe('world');
    expect(await text((await registry.getBlob('a/b/c', digest, 'bytes=-3')).stream)).toBe('rld');
    await expectCode(registry.getBlob('a/b/c', digest, 'bytes=11-'), 'RANGE_INVALID');

    // Repository scoped: another repository does not serve it until mounted.
    await expectCode(registry.statBlob('other', digest), 'BLOB_UNKNOWN');
    const mounted = await registry.startUpload('other', { mount: digest, from: 'a/b/c' });
    expect(mounted).toEqual({ kind: 'mounted', blob: { digest, size } });
    expect((await registry.statBlob('other', digest)).size).toBe(size);
    // A mount from a repository that lacks it falls back to a session.
    const fallback = await registry.startUpload('third', { mount: digest, from: 'nowhere' });
    expect(fallback.kind).toBe('session');
    // Without `from`: mounted only from a holder the asker may read, else a session.
    const asked: string[] = [];
    const denied = await registry.startUpload('fourth', {
      mount: digest,
      mayRead: (r) => (asked.push(r), false),
    });
    expect(denied.kind).toBe('session');
    expect(asked.sort()).toEqual(['a/b/c', 'other']);
    await expectCode(registry.statBlob('fourth', digest), 'BLOB_UNKNOWN');
    expect((await registry.startUpload('fourth', { mount: digest })).kind).toBe('session');
    const auto = await registry.startUpload('fourth', { mount: digest, mayRead: (r) => r === 'a/b/c' });
    expect(auto).toEqual({ kind: 'mounted', blob: { digest, size } });
    expect((await registry.statBlob('fourth', digest)).size).toBe(size);
    // A digest nobody holds is a session too.
    expect((await registry.startUpload('fourth', { mount: sha('absent'), mayRead: () => true })).kind).toBe(
      'session',
    );

    await registry.deleteBlob('other', digest);
    await expectCode(registry.statBlob('other', digest), 'BLOB_UNKNOWN');
    await expectCode(registry.deleteBlob('other', digest), 'BLOB_UNKNOWN');
    expect((await registry.statBlob('a/b/c', digest)).size).toBe(size);
  });

  it('monolithic upload with a wrong digest keeps nothing', async () => {
    await expectCode(
      registry.startUpload('repo', { digest: sha('other'), body: Readable.from([Buffer.from('content')]) }),
      'DIGEST_INVALID',
    );
    const all: string[] = [];
    for await (const d of blobs.list()) {
      all.push(d);
    }
    expect(all).toEqual([]);
    await expectCode(registry.startUpload('repo', { digest: 'sha256:nope' }), 'DIGEST_INVALID');
  });

  it('chunked upload: PATCH with Content-Range, status, out-of-order chunk, PUT with last chunk', async () => {
    const start = await registry.startUpload('ns/app');
    if (start.kind !== 'session') {
      throw new Error('expected a session');
    }
    const id = start.upload.id;
    expect(start.upload.offset).toBe(0);
    let s = await registry.appendUpload('ns/app', id, Readable.from([Buffer.from('abc')]), {
      contentRange: '0-2',
    });
    expect(s.offset).toBe(3);
    await expectCode(
      registry.appendUpload('ns/app', id, Readable.from([Buffer.from('xyz')]), { contentRange: '5-7' }),
      'RANGE_INVALID',
    );
    // A chunk whose length disagrees with its Content-Range is cut off again.
    await expectCode(
      registry.appendUpload('ns/app', id, Readable.from([Buffer.from('de')]), { contentRange: '3-5' }),
      'SIZE_INVALID',
    );
    expect((await registry.uploadStatus('ns/app', id)).offset).toBe(3);
    s = await registry.appendUpload('ns/app', id, Readable.from([Buffer.from('def')]));
    expect(s.offset).toBe(6);
    await expectCode(registry.uploadStatus('ns/other', id), 'BLOB_UPLOAD_UNKNOWN');
    const done = await registry.completeUpload(
      'ns/app',
      id,
      sha('abcdefgh'),
      Readable.from([Buffer.from('gh')]),
    );
    expect(done).toEqual({ digest: sha('abcdefgh'), size: 8 });
    expect(await text((await registry.getBlob('ns/app', done.digest)).stream)).toBe('abcdefgh');
    await expectCode(registry.uploadStatus('ns/app', id), 'BLOB_UPLOAD_UNKNOWN');
    expect(await uploadIds(parts)).toEqual([]);
  });

  it('a chunked upload moves between two replicas (one Redis, one store, no local bytes)', async () => {
    // A second "replica": its own store clients and session store on the same Redis and store.
    const other = await createStorage(storageConfig);
    const replicaB = new RegistryService(
      other.blobs,
      other.repositories,
      new UploadSessionStore(redis, other.uploads, 3600),
      redis,
    );
    const big = Buffer.alloc(300_000, 'z');
    const start = await registry.startUpload('ns/app');
    if (start.kind !== 'session') {
      throw new Error('expected a session');
    }
    const id = start.upload.id;
    await registry.appendUpload('ns/app', id, Readable.from([Buffer.from('abc')]), { contentRange: '0-2' });
    expect((await replicaB.uploadStatus('ns/app', id)).offset).toBe(3);
    await replicaB.appendUpload('ns/app', id, Readable.from([big]), {
      contentRange: `3-${3 + big.length - 1}`,
    });
    await registry.appendUpload('ns/app', id, Readable.from([Buffer.from('def')]));
    const whole = Buffer.concat([Buffer.from('abc'), big, Buffer.from('def'), Buffer.from('gh')]);
    const done = await replicaB.completeUpload('ns/app', id, sha(whole), Readable.from([Buffer.from('gh')]));
    expect(done).toEqual({ digest: sha(whole), size: whole.length });
    expect(
      createHash('sha256')
        .update(Buffer.from(await text((await registry.getBlob('ns/app', done.digest)).stream), 'utf8'))
        .digest('hex'),
    ).toBe(done.digest.slice(7));
    expect(await uploadIds(parts)).toEqual([]);
  });

  it('a PUT with the wrong digest drops the session and its bytes', async () => {
    const start = await registry.startUpload('repo');
    if (start.kind !== 'session') {
      throw new Error('expected a session');
    }
    await registry.appendUpload('repo', start.upload.id, Readable.from([Buffer.from('data')]));
    await expectCode(registry.completeUpload('repo', start.upload.id, sha('not data')), 'DIGEST_INVALID');
    await expectCode(registry.uploadStatus('repo', start.upload.id), 'BLOB_UPLOAD_UNKNOWN');
    expect(await uploadIds(parts)).toEqual([]);
    await expectCode(registry.statBlob('repo', sha('data')), 'BLOB_UNKNOWN');
  });

  it('cancels uploads and rejects unknown ones', async () => {
    const start = await registry.startUpload('repo');
    if (start.kind !== 'session') {
      throw new Error('expected a session');
    }
    await registry.cancelUpload('repo', start.upload.id);
    await expectCode(registry.cancelUpload('repo', start.upload.id), 'BLOB_UPLOAD_UNKNOWN');
    await expectCode(registry.uploadStatus('repo', 'not-a-uuid'), 'BLOB_UPLOAD_UNKNOWN');
    await expectCode(
      registry.completeUpload('repo', '6f9619ff-8b86-4d11-b42d-00c04fc964ff', sha('x')),
      'BLOB_UPLOAD_UNKNOWN',
    );
  });

  it('puts and gets manifests by tag and digest, exactly as pushed', async () => {
    const { digest, bytes } = await pushImage('team/app', 'v1');
    expect(digest).toBe(sha(bytes));
    const byTag = await registry.getManifest('team/app', 'v1');
    expect(byTag).toEqual({ digest, mediaType: MediaType.OciManifest, size: bytes.length, bytes });
    expect((await registry.getManifest('team/app', digest)).bytes.equals(bytes)).toBe(true);
    await expectCode(registry.getManifest('team/app', 'v2'), 'MANIFEST_UNKNOWN');
    await expectCode(registry.getManifest('elsewhere', digest), 'MANIFEST_UNKNOWN');
    // Reads of a reference that cannot be a tag find nothing (404); only a PUT refuses its format.
    await expectCode(registry.getManifest('team/app', 'bad tag'), 'MANIFEST_UNKNOWN');
    await expectCode(registry.getManifest('team/app', '.hidden'), 'MANIFEST_UNKNOWN');
    await expectCode(registry.putManifest('team/app', 'bad tag', bytes), 'TAG_INVALID');
    await expectCode(registry.getManifest('Team/App', 'v1'), 'NAME_INVALID');
    // Push by digest; a digest that does not match is refused.
    expect((await registry.putManifest('team/app', digest, bytes)).digest).toBe(digest);
    await expectCode(registry.putManifest('team/app', sha('x'), bytes), 'DIGEST_INVALID');
  });

  it('refuses manifests naming missing blobs, and bad ones, without moving tags', async () => {
    const { digest } = await pushImage('repo', 'latest');
    const ghost = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: MediaType.DockerConfig, digest: sha('nope'), size: 4 },
      layers: [],
    };
    const err = await expectCode(
      registry.putManifest('repo', 'latest', Buffer.from(JSON.stringify(ghost)), MediaType.DockerManifest),
      'MANIFEST_BLOB_UNKNOWN',
    );
    expect(err.detail).toEqual({ missing: [sha('nope')] });
    expect((await registry.getManifest('repo', 'latest')).digest).toBe(digest);
    await expectCode(registry.putManifest('repo', 'x', Buffer.from('{not json')), 'MANIFEST_INVALID');
    await expectCode(registry.putManifest('repo', 'x', Buffer.from('{"schemaVersion":1}')), 'UNSUPPORTED');
    await expectCode(
      registry.putManifest(
        'repo',
        'x',
        Buffer.from(JSON.stringify({ ...ghost, mediaType: undefined })),
        MediaType.DockerManifest,
      ),
      'MANIFEST_INVALID',
    );
  });

  it('accepts Docker schema 2 and indexes whose children are present', async () => {
    const config = await pushBlob(
      'multi',
      '{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
    );
    const docker = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: MediaType.DockerConfig, ...config },
        layers: [],
      }),
    );
    const child = await registry.putManifest('multi', sha(docker), docker, MediaType.DockerManifest);
    expect((await registry.getManifest('multi', child.digest)).mediaType).toBe(MediaType.DockerManifest);
    const list = (children: string[]) =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.DockerManifestList,
          manifests: children.map((digest) => ({
            mediaType: MediaType.DockerManifest,
            digest,
            size: docker.length,
            platform: { architecture: 'arm64', os: 'linux' },
          })),
        }),
      );
    await expectCode(
      registry.putManifest('multi', 'list', list([child.digest, sha('missing')])),
      'MANIFEST_BLOB_UNKNOWN',
    );
    const ok = await registry.putManifest('multi', 'list', list([child.digest]));
    expect((await registry.getManifest('multi', 'list')).mediaType).toBe(MediaType.DockerManifestList);
    // An OCI index without mediaType is served as an OCI index.
    const oci = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MediaType.DockerManifest, digest: child.digest, size: docker.length }],
      }),
    );
    await registry.putManifest('multi', 'oci', oci);
    expect((await registry.getManifest('multi', 'oci')).mediaType).toBe(MediaType.OciIndex);
    expect(ok.digest).toBe(sha(list([child.digest])));
  });

  it('deletes manifests by digest (with their tags) and tags alone', async () => {
    const a = await pushImage('repo', 'a', 'one');
    await registry.putManifest('repo', 'a2', a.bytes);
    const b = await pushImage('repo', 'b', 'two');
    await registry.deleteManifest('repo', 'b');
    await expectCode(registry.getManifest('repo', 'b'), 'MANIFEST_UNKNOWN');
    expect((await registry.getManifest('repo', b.digest)).digest).toBe(b.digest);
    await registry.deleteManifest('repo', a.digest);
    await expectCode(registry.getManifest('repo', 'a'), 'MANIFEST_UNKNOWN');
    await expectCode(registry.getManifest('repo', 'a2'), 'MANIFEST_UNKNOWN');
    await expectCode(registry.getManifest('repo', a.digest), 'MANIFEST_UNKNOWN');
    await expectCode(registry.deleteManifest('repo', a.digest), 'MANIFEST_UNKNOWN');
    expect((await registry.listTags('repo')).items).toEqual([]);
  });

  it('pages tags and the catalog', async () => {
    const { bytes } = await pushImage('lib/x', 't0');
    for (const t of ['t1', 't2', 't3', 't4']) {
      await registry.putManifest('lib/x', t, bytes);
    }
    await pushImage('lib/y', 'latest');
    expect(await registry.listTags('lib/x')).toEqual({ items: ['t0', 't1', 't2', 't3', 't4'], next: null });
    expect(await registry.listTags('lib/x', { n: 2 })).toEqual({ items: ['t0', 't1'], next: 't1' });
    expect(await registry.listTags('lib/x', { n: 2, last: 't1' })).toEqual({
      items: ['t2', 't3'],
      next: 't3',
    });
    expect(await registry.listTags('lib/x', { n: 2, last: 't3' })).toEqual({ items: ['t4'], next: null });
    expect(await registry.listTags('lib/x', { n: 0 })).toEqual({ items: [], next: null });
    await expectCode(registry.listTags('nope'), 'NAME_UNKNOWN');
    expect(await registry.listRepositories()).toEqual({ items: ['lib/x', 'lib/y'], next: null });
    expect(await registry.listRepositories({ n: 1 })).toEqual({ items: ['lib/x'], next: 'lib/x' });
    expect(await registry.listRepositories({ n: 1, last: 'lib/x' })).toEqual({
      items: ['lib/y'],
      next: null,
    });
  });

  it('lists referrers of a subject, filtered by artifact type', async () => {
    const image = await pushImage('repo', 'latest');
    const empty = await pushBlob('repo', '{}');
    const sig = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType: 'application/vnd.example.sig',
        config: { mediaType: MediaType.OciEmpty, ...empty },
        layers: [{ mediaType: MediaType.OciEmpty, ...empty }],
        subject: { mediaType: MediaType.OciManifest, digest: image.digest, size: image.bytes.length },
        annotations: { 'org.example': 'yes' },
      }),
    );
    const put = await registry.putManifest('repo', sha(sig), sig);
    expect(put.subject).toBe(image.digest);
    const idx = await registry.referrers('repo', image.digest);
    expect(idx).toEqual({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        {
          mediaType: MediaType.OciManifest,
          digest: sha(sig),
          size: sig.length,
          artifactType: 'application/vnd.example.sig',
          annotations: { 'org.example': 'yes' },
        },
      ],
    });
    expect((await registry.referrers('repo', image.digest, 'application/other')).manifests).toEqual([]);
    expect((await registry.referrers('repo', sha('nothing'))).manifests).toEqual([]);
    await registry.deleteManifest('repo', sha(sig));
    expect((await registry.referrers('repo', image.digest)).manifests).toEqual([]);
    await expectCode(registry.referrers('repo', 'bad'), 'DIGEST_INVALID');
  });

  it('sweeps temp files of expired sessions', async () => {
    const start = await registry.startUpload('repo');
    if (start.kind !== 'session') {
      throw new Error('expected a session');
    }
    await registry.appendUpload('repo', start.upload.id, Readable.from([Buffer.from('data')]));
    const uploads = new UploadSessionStore(redis, parts, 3600);
    expect(await uploads.sweep(0)).toBe(0);
    await redis.flushall();
    expect(await uploads.sweep(0)).toBe(1);
    expect(await uploadIds(parts)).toEqual([]);
  });
});
