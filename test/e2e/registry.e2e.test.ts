import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@stratum/config';
import { freePort, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { createApiApp } from '../../apps/api/src/bootstrap';
import {
  isolatedTool,
  makeImage,
  OCI_MANIFEST,
  OciImageParts,
  sha,
  skopeo,
  writeOciLayout,
} from './registry-fixtures';

// The registry API end to end: the real API (createApiApp), a real redis-server, the fs store in
// a temp DATA_DIR, and the real skopeo client pushing and pulling an OCI image built here.

/** A one-layer OCI image layout at `dir`, tagged `tag`; returns the manifest digest and parts. */
async function makeOciLayout(dir: string, tag: string): Promise<OciImageParts> {
  const image = await makeImage(join(dir, '..'), {
    'etc/hello.txt': 'hello from stratum\n',
    README: 'a tiny image\n',
  });
  await writeOciLayout(dir, tag, [image]);
  return image;
}

// superagent JSON-encodes a Buffer body when the Content-Type ends in +json: send manifests as strings.
function errorCode(res: request.Response): string {
  return (res.body as { errors: { code: string }[] }).errors[0].code;
}

describe('registry /v2/ (e2e, skopeo)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let app: INestApplication;
  let host: string;
  let http: ReturnType<typeof request>;
  let image: Awaited<ReturnType<typeof makeOciLayout>>;

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-registry-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-registry-work-'));
    const config = loadConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      PRETTY_LOGS: 'false',
    });
    app = await createApiApp(config);
    const port = await freePort();
    await app.listen(port, '127.0.0.1');
    host = `127.0.0.1:${port}`;
    http = request(`http://${host}`);
    image = await makeOciLayout(join(work, 'layout'), 'v1');
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  it('answers the base endpoint with the API version header', async () => {
    const res = await http.get('/v2/').expect(200);
    expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(res.body).toEqual({});
  });

  it('skopeo pushes an OCI image, inspects it and copies it back unchanged', async () => {
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${host}/ns/name:v1`,
    );
    const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${host}/ns/name:v1`);
    expect(sha(raw)).toBe(image.digest);
    const inspected = JSON.parse(
      await skopeo('inspect', '--tls-verify=false', `docker://${host}/ns/name:v1`),
    ) as {
      Digest: string;
      Layers: string[];
      Architecture: string;
    };
    expect(inspected.Digest).toBe(image.digest);
    expect(inspected.Layers).toEqual([sha(image.layer)]);
    expect(inspected.Architecture).toBe('amd64');

    const out = join(work, 'out');
    await skopeo('copy', '--src-tls-verify=false', `docker://${host}/ns/name:v1`, `oci:${out}:copy`);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    expect(index.manifests[0].digest).toBe(image.digest);
    expect(await readFile(join(out, 'blobs', 'sha256', sha(image.layer).slice(7)))).toEqual(image.layer);

    const head = await http.head('/v2/ns/name/manifests/v1').expect(200);
    expect(head.headers['docker-content-digest']).toBe(image.digest);
    expect(head.headers['content-type']).toBe(OCI_MANIFEST);
    expect(head.headers['content-length']).toBe(String(image.manifest.length));
  }, 120_000);

  it('skopeo pushes a Docker schema 2 conversion and mounts blobs across repositories', async () => {
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--format',
      'v2s2',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${host}/ns/name:docker`,
    );
    const res = await http.get('/v2/ns/name/manifests/docker').expect(200);
    expect(res.headers['content-type']).toBe('application/vnd.docker.distribution.manifest.v2+json');
    await skopeo(
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${host}/ns/name:v1`,
      `docker://${host}/other/deep/repo:v1`,
    );
    await http.head(`/v2/other/deep/repo/blobs/${sha(image.layer)}`).expect(200);
    const raw = await skopeo('inspect', '--raw', '--tls-verify=false', `docker://${host}/other/deep/repo:v1`);
    expect(sha(raw)).toBe(image.digest);
  }, 120_000);

  it('podman pulls from and pushes to Stratum', async () => {
    // A private store (vfs: no mounts) so the host's podman images are not touched.
    const store = join(work, 'podman');
    const podman = isolatedTool('podman', store, [], 120_000);
    await podman('pull', '--tls-verify=false', `${host}/ns/name:v1`);
    await podman('tag', `${host}/ns/name:v1`, `${host}/podman/pushed:latest`);
    await podman('push', '--tls-verify=false', `${host}/podman/pushed:latest`);
    const pushed = await http.get('/v2/podman/pushed/manifests/latest').expect(200);
    const manifest = JSON.parse(pushed.text) as { layers: { digest: string }[] };
    for (const layer of manifest.layers) {
      await http.head(`/v2/podman/pushed/blobs/${layer.digest}`).expect(200);
    }
    await podman('rmi', '-a', '-f');
    await podman(
      'pull',
      '--tls-verify=false',
      `${host}/podman/pushed@${pushed.headers['docker-content-digest']}`,
    );
    await podman('rmi', '-a', '-f');
  }, 240_000);

  it('lists the catalog and pages tags with Link headers', async () => {
    for (const tag of ['a', 'b', 'c']) {
      const r = await http
        .put(`/v2/ns/name/manifests/${tag}`)
        .set('Content-Type', OCI_MANIFEST)
        .send(image.manifest.toString('utf8'));
      expect([r.status, r.text]).toEqual([201, '']);
    }
    const catalog = await http.get('/v2/_catalog').expect(200);
    expect(catalog.body).toEqual({ repositories: ['ns/name', 'other/deep/repo', 'podman/pushed'] });
    const firstRepo = await http.get('/v2/_catalog?n=1').expect(200);
    expect(firstRepo.body).toEqual({ repositories: ['ns/name'] });
    expect(firstRepo.headers.link).toBe('</v2/_catalog?n=1&last=ns%2Fname>; rel="next"');

    const all = await http.get('/v2/ns/name/tags/list').expect(200);
    expect(all.body).toEqual({ name: 'ns/name', tags: ['a', 'b', 'c', 'docker', 'v1'] });
    const p1 = await http.get('/v2/ns/name/tags/list?n=2').expect(200);
    expect(p1.body.tags).toEqual(['a', 'b']);
    expect(p1.headers.link).toBe('</v2/ns/name/tags/list?n=2&last=b>; rel="next"');
    const p2 = await http.get('/v2/ns/name/tags/list?n=2&last=b').expect(200);
    expect(p2.body.tags).toEqual(['c', 'docker']);
    const p3 = await http.get('/v2/ns/name/tags/list?n=2&last=docker').expect(200);
    expect(p3.body.tags).toEqual(['v1']);
    expect(p3.headers.link).toBeUndefined();
    expect(errorCode(await http.get('/v2/ns/name/tags/list?n=x').expect(400))).toBe(
      'PAGINATION_NUMBER_INVALID',
    );
    expect(errorCode(await http.get('/v2/no/such/tags/list').expect(404))).toBe('NAME_UNKNOWN');
  });

  it('mounts a blob it already holds without `from` (automatic content discovery): 201, else 202', async () => {
    const layer = sha(image.layer);
    await http.head(`/v2/auto/mount/blobs/${layer}`).expect(404);
    const mounted = await http.post(`/v2/auto/mount/blobs/uploads/?mount=${layer}`).expect(201);
    expect(mounted.headers['location']).toBe(`/v2/auto/mount/blobs/${layer}`);
    expect(mounted.headers['docker-content-digest']).toBe(layer);
    await http.head(`/v2/auto/mount/blobs/${layer}`).expect(200);
    // Again, now that the repository holds it itself.
    await http.post(`/v2/auto/mount/blobs/uploads/?mount=${layer}`).expect(201);
    // A digest nobody holds: an upload session instead, as without mount support.
    const absent = sha('held by nobody');
    const session = await http.post(`/v2/auto/mount/blobs/uploads/?mount=${absent}`).expect(202);
    expect(session.headers['location']).toMatch(/^\/v2\/auto\/mount\/blobs\/uploads\/./);
    await http.delete(session.headers['location']).expect(204);
    await http.head(`/v2/auto/mount/blobs/${absent}`).expect(404);
  });

  it('chunked upload with Content-Range, status, out-of-order chunk, final PUT; blob GET with Range', async () => {
    const content = Buffer.from('0123456789abcdefghij');
    const start = await http.post('/v2/chunked/repo/blobs/uploads/').expect(202);
    const location = start.headers.location;
    expect(location).toMatch(/^\/v2\/chunked\/repo\/blobs\/uploads\/[0-9a-f-]{36}$/);
    expect(start.headers['docker-upload-uuid']).toBe(location.split('/').pop());
    const c1 = await http
      .patch(location)
      .set('Content-Type', 'application/octet-stream')
      .set('Content-Range', '0-9')
      .send(content.subarray(0, 10))
      .expect(202);
    expect(c1.headers.range).toBe('0-9');
    const bad = await http
      .patch(location)
      .set('Content-Type', 'application/octet-stream')
      .set('Content-Range', '12-15')
      .send(content.subarray(12, 16))
      .expect(416);
    expect(errorCode(bad)).toBe('RANGE_INVALID');
    const status = await http.get(location).expect(204);
    expect(status.headers.range).toBe('0-9');
    const c2 = await http
      .patch(location)
      .set('Content-Type', 'application/octet-stream')
      .set('Content-Range', '10-14')
      .send(content.subarray(10, 15))
      .expect(202);
    expect(c2.headers.range).toBe('0-14');
    const done = await http
      .put(`${location}?digest=${sha(content)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(content.subarray(15))
      .expect(201);
    expect(done.headers.location).toBe(`/v2/chunked/repo/blobs/${sha(content)}`);
    expect(done.headers['docker-content-digest']).toBe(sha(content));
    await http.get(location).expect(404);

    const head = await http.head(`/v2/chunked/repo/blobs/${sha(content)}`).expect(200);
    expect(head.headers['content-length']).toBe('20');
    const whole = await http
      .get(`/v2/chunked/repo/blobs/${sha(content)}`)
      .buffer(true)
      .parse(binary)
      .expect(200);
    expect(whole.body).toEqual(content);
    const part = await http
      .get(`/v2/chunked/repo/blobs/${sha(content)}`)
      .set('Range', 'bytes=5-9')
      .buffer(true)
      .parse(binary)
      .expect(206);
    expect(part.body).toEqual(content.subarray(5, 10));
    expect(part.headers['content-range']).toBe('bytes 5-9/20');
    const unsat = await http
      .get(`/v2/chunked/repo/blobs/${sha(content)}`)
      .set('Range', 'bytes=50-')
      .expect(416);
    expect(unsat.headers['content-range']).toBe('bytes */20');
    await http.delete(`/v2/chunked/repo/blobs/${sha(content)}`).expect(202);
    await http.head(`/v2/chunked/repo/blobs/${sha(content)}`).expect(404);
    expect(errorCode(await http.get(`/v2/chunked/repo/blobs/${sha(content)}`).expect(404))).toBe(
      'BLOB_UNKNOWN',
    );
  });

  it('a bad digest is DIGEST_INVALID and leaves nothing behind', async () => {
    const content = Buffer.from('some bytes that will not match');
    const mono = await http
      .post(`/v2/bad/digest/blobs/uploads/?digest=${sha('something else')}`)
      .set('Content-Type', 'application/octet-stream')
      .send(content)
      .expect(400);
    expect(errorCode(mono)).toBe('DIGEST_INVALID');

    const start = await http.post('/v2/bad/digest/blobs/uploads/').expect(202);
    await http
      .patch(start.headers.location)
      .set('Content-Type', 'application/octet-stream')
      .send(content)
      .expect(202);
    const put = await http.put(`${start.headers.location}?digest=${sha('something else')}`).expect(400);
    expect(errorCode(put)).toBe('DIGEST_INVALID');
    expect(errorCode(await http.get(start.headers.location).expect(404))).toBe('BLOB_UPLOAD_UNKNOWN');

    const blobFiles = await readdir(
      join(dataDir, 'store', 'blobs', 'sha256', sha(content).slice(7, 9)),
    ).catch(() => []);
    expect(blobFiles).not.toContain(sha(content).slice(7));
    expect(await readdir(join(dataDir, 'store', 'tmp'))).toEqual([]);
    expect(await readdir(join(dataDir, 'store', 'uploads')).catch(() => [])).toEqual([]);
    expect(errorCode(await http.get('/v2/bad/digest/tags/list').expect(404))).toBe('NAME_UNKNOWN');
  });

  it('answers the spec error codes', async () => {
    const unknownBlob = await http.get(`/v2/ns/name/blobs/${sha('nothing')}`).expect(404);
    expect(unknownBlob.body).toEqual({
      errors: [{ code: 'BLOB_UNKNOWN', message: expect.any(String), detail: { digest: sha('nothing') } }],
    });
    expect(unknownBlob.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(
      errorCode(await http.get('/v2/ns/name/blobs/uploads/6f9619ff-8b86-4d11-b42d-00c04fc964ff').expect(404)),
    ).toBe('BLOB_UPLOAD_UNKNOWN');
    expect(errorCode(await http.patch('/v2/ns/name/blobs/uploads/nope').send('x').expect(404))).toBe(
      'BLOB_UPLOAD_UNKNOWN',
    );
    const missing = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha('no config'), size: 9 },
      layers: [],
    };
    const mbu = await http
      .put('/v2/ns/name/manifests/broken')
      .set('Content-Type', OCI_MANIFEST)
      .send(JSON.stringify(missing))
      .expect(400);
    expect(errorCode(mbu)).toBe('MANIFEST_BLOB_UNKNOWN');
    await http.get('/v2/ns/name/manifests/broken').expect(404);
    expect(errorCode(await http.get('/v2/ns/name/manifests/nope').expect(404))).toBe('MANIFEST_UNKNOWN');
    // A reference that cannot be a tag names nothing to read (404), but is refused on PUT (400).
    for (const bad of ['.INVALID_MANIFEST_NAME', '-dash', 'a'.repeat(129)]) {
      expect(errorCode(await http.get(`/v2/ns/name/manifests/${bad}`).expect(404))).toBe('MANIFEST_UNKNOWN');
      await http.head(`/v2/ns/name/manifests/${bad}`).expect(404);
    }
    expect(
      errorCode(
        await http
          .put('/v2/ns/name/manifests/.INVALID_MANIFEST_NAME')
          .set('Content-Type', OCI_MANIFEST)
          .send(image.manifest.toString('utf8'))
          .expect(400),
      ),
    ).toBe('TAG_INVALID');
    expect(errorCode(await http.get('/v2/Bad/Name/tags/list').expect(400))).toBe('NAME_INVALID');
    expect(errorCode(await http.get('/v2/a//b/manifests/latest').expect(400))).toBe('NAME_INVALID');
    expect(errorCode(await http.get('/v2/ns/name/blobs/sha256:short').expect(400))).toBe('DIGEST_INVALID');
    expect(
      errorCode(
        await http.put('/v2/ns/name/manifests/x').set('Content-Type', OCI_MANIFEST).send('{oops').expect(400),
      ),
    ).toBe('MANIFEST_INVALID');
    await http.post('/v2/ns/name/tags/list').expect(405);
    await http.get('/v2/ns/name/nothing-here').expect(404);
  });

  it('stores a manifest sent as application/json byte for byte (body parsers stay off /v2/)', async () => {
    const bytes = Buffer.from(
      `{\n  "schemaVersion": 2,\n  "mediaType": "${OCI_MANIFEST}",\n  "config": ${JSON.stringify({ mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(image.config), size: image.config.length })},\n  "layers": []\n}\n`,
    );
    const put = await http
      .put('/v2/ns/name/manifests/json')
      .set('Content-Type', 'application/json')
      .send(bytes.toString('utf8'))
      .expect(201);
    expect(put.headers['docker-content-digest']).toBe(sha(bytes));
    const got = await http
      .get(`/v2/ns/name/manifests/${sha(bytes)}`)
      .buffer(true)
      .parse(binary)
      .expect(200);
    expect(got.body).toEqual(bytes);
  });

  it('serves referrers, and deletes manifests', async () => {
    const empty = Buffer.from('{}');
    await http
      .post(`/v2/ns/name/blobs/uploads/?digest=${sha(empty)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(empty)
      .expect(201);
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.example.sbom',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(empty), size: 2 },
        layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(empty), size: 2 }],
        subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length },
      }),
    );
    const put = await http
      .put(`/v2/ns/name/manifests/${sha(artifact)}`)
      .set('Content-Type', OCI_MANIFEST)
      .send(artifact.toString('utf8'))
      .expect(201);
    expect(put.headers['oci-subject']).toBe(image.digest);
    const refs = await http.get(`/v2/ns/name/referrers/${image.digest}`).expect(200);
    // Exactly the media type, no charset parameter (the conformance suite compares the string).
    expect(refs.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
    expect(JSON.parse(refs.text)).toEqual({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: sha(artifact),
          size: artifact.length,
          artifactType: 'application/vnd.example.sbom',
        },
      ],
    });
    const filtered = await http.get(`/v2/ns/name/referrers/${image.digest}?artifactType=x/y`).expect(200);
    expect(filtered.headers['oci-filters-applied']).toBe('artifactType');
    expect(JSON.parse(filtered.text).manifests).toEqual([]);

    await http.delete(`/v2/ns/name/manifests/${sha(artifact)}`).expect(202);
    expect(
      JSON.parse((await http.get(`/v2/ns/name/referrers/${image.digest}`).expect(200)).text).manifests,
    ).toEqual([]);
    await http.delete('/v2/ns/name/manifests/a').expect(202);
    expect(errorCode(await http.get('/v2/ns/name/manifests/a').expect(404))).toBe('MANIFEST_UNKNOWN');
    await http.get('/v2/ns/name/manifests/b').expect(200);
  });

  it('leaves the REST API error format alone', async () => {
    const res = await http.get('/api/v1/builds/not-a-uuid');
    expect(res.body.errors).toBeUndefined();
  });
});

/** superagent parser that keeps a binary body as a Buffer. */
function binary(res: request.Response, done: (err: Error | null, body: Buffer) => void): void {
  const stream = res as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => done(null, Buffer.concat(chunks)));
}
