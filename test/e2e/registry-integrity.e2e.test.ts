import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@stratum/config';
import { freePort, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { createApiApp } from '../../apps/api/src/bootstrap';
import { makeImage, OCI_MANIFEST, OciImageParts, sha } from './registry-fixtures';

// Registry integrity end to end (issue 13): the real API, a real redis-server and the fs store in
// a temp DATA_DIR, driven over HTTP. A blob a manifest uses cannot be deleted from under it; a
// blob file changed on disk is never served with 200, and fsck finds and quarantines it.

function errorOf(res: request.Response): { code: string; message: string } {
  return (res.body as { errors: { code: string; message: string }[] }).errors[0];
}

describe('registry integrity (e2e)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let app: INestApplication;
  let http: ReturnType<typeof request>;
  let image: OciImageParts;

  async function pushBlob(repository: string, bytes: Buffer): Promise<void> {
    await http
      .post(`/v2/${repository}/blobs/uploads/?digest=${sha(bytes)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(bytes)
      .expect(201);
  }

  async function pushImage(repository: string, tag: string, parts: OciImageParts): Promise<void> {
    await pushBlob(repository, parts.config);
    await pushBlob(repository, parts.layer);
    await http
      .put(`/v2/${repository}/manifests/${tag}`)
      .set('Content-Type', OCI_MANIFEST)
      .send(parts.manifest.toString('utf8'))
      .expect(201);
  }

  const blobFile = (digest: string): string =>
    join(dataDir, 'store', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));

  /** Rewrites a stored blob in place, same size, mtime put back: what a hostile step could do. */
  async function tamper(digest: string): Promise<Buffer> {
    const path = blobFile(digest);
    const before = await stat(path);
    const evil = Buffer.from(await readFile(path));
    evil[evil.length - 1] ^= 0x01;
    await writeFile(path, evil);
    await utimes(path, before.atime, before.mtime);
    return evil;
  }

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-integrity-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-integrity-work-'));
    const config = loadConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'error',
      PRETTY_LOGS: 'false',
      // no scheduled run between the test's own: the weekly fsck (Sunday 04:43) once fired
      // during the fsck test and made its run count 3
      FSCK_SCHEDULE: 'off',
      MAINTENANCE_SCHEDULE: 'off',
    });
    app = await createApiApp(config);
    const port = await freePort();
    await app.listen(port, '127.0.0.1');
    http = request(`http://127.0.0.1:${port}`);
    image = await makeImage(work, { 'etc/integrity.txt': 'integrity\n' });
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await redis?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  it('refuses to delete a blob a tagged manifest uses (409 DENIED naming it), and the tag still pulls', async () => {
    await pushImage('integrity/used', 'v1', image);
    for (const blob of [image.layer, image.config]) {
      const res = await http.delete(`/v2/integrity/used/blobs/${sha(blob)}`).expect(409);
      expect(errorOf(res).code).toBe('DENIED');
      expect(errorOf(res).message).toContain(image.digest);
      expect(errorOf(res).message).toContain('tag v1');
    }
    await http.head(`/v2/integrity/used/blobs/${sha(image.layer)}`).expect(200);
    await http.get('/v2/integrity/used/manifests/v1').expect(200);

    // Untagged but still pullable by digest: still refused.
    await http.delete('/v2/integrity/used/manifests/v1').expect(202);
    const untagged = await http.delete(`/v2/integrity/used/blobs/${sha(image.layer)}`).expect(409);
    expect(errorOf(untagged).message).toContain(image.digest);

    // Once the manifest is gone the blob may go.
    await http.delete(`/v2/integrity/used/manifests/${image.digest}`).expect(202);
    await http.delete(`/v2/integrity/used/blobs/${sha(image.layer)}`).expect(202);
    await http.head(`/v2/integrity/used/blobs/${sha(image.layer)}`).expect(404);
  });

  it('deletes an unreferenced blob (202), and the same blob linked elsewhere stays in use there', async () => {
    const loose = Buffer.from('a blob no manifest names');
    await pushBlob('integrity/loose', loose);
    await pushImage('integrity/other', 'v1', image);
    // The layer is linked to `loose` too but no manifest there uses it.
    await pushBlob('integrity/loose', image.layer);
    await http.delete(`/v2/integrity/loose/blobs/${sha(loose)}`).expect(202);
    await http.delete(`/v2/integrity/loose/blobs/${sha(image.layer)}`).expect(202);
    await http.head(`/v2/integrity/loose/blobs/${sha(loose)}`).expect(404);
    await http.delete(`/v2/integrity/other/blobs/${sha(image.layer)}`).expect(409);
    await http.head(`/v2/integrity/other/blobs/${sha(image.layer)}`).expect(200);
    expect(errorOf(await http.delete(`/v2/integrity/loose/blobs/${sha(loose)}`).expect(404)).code).toBe(
      'BLOB_UNKNOWN',
    );
  });

  it('never serves a tampered blob or manifest with 200: 404 with a clear message, quarantined', async () => {
    const parts = await makeImage(work, { 'etc/tamper.txt': 'tamper me\n' });
    await pushImage('integrity/tamper', 'v1', parts);
    const layer = sha(parts.layer);
    const ok = await http.get(`/v2/integrity/tamper/blobs/${layer}`).buffer(true).parse(binary).expect(200);
    expect(ok.body).toEqual(parts.layer);

    await tamper(layer);
    const messages: string[] = [];
    for (const range of ['bytes=0-3', undefined]) {
      const req = http.get(`/v2/integrity/tamper/blobs/${layer}`).buffer(true).parse(binary);
      const res = await (range === undefined ? req : req.set('Range', range));
      expect(res.status).toBe(404);
      const error = (
        JSON.parse((res.body as Buffer).toString('utf8')) as { errors: { code: string; message: string }[] }
      ).errors[0];
      expect(error.code).toBe('BLOB_UNKNOWN');
      messages.push(error.message);
    }
    // The first request found the mismatch and says so; the blob is gone for the next one.
    expect(messages[0]).toContain('failed verification');
    expect(messages[0]).toContain('quarantined');
    await http.head(`/v2/integrity/tamper/blobs/${layer}`).expect(404);
    expect(await readdir(join(dataDir, 'store', 'quarantine'))).toHaveLength(1);

    await tamper(parts.digest);
    const manifest = await http.get('/v2/integrity/tamper/manifests/v1').expect(404);
    expect(errorOf(manifest).code).toBe('MANIFEST_UNKNOWN');
    expect(errorOf(manifest).message).toContain('quarantined');
  });

  it('fsck re-hashes every blob, quarantines the tampered one and reports counts', async () => {
    const parts = await makeImage(work, { 'etc/fsck.txt': 'fsck me\n' });
    await pushImage('integrity/fsck', 'v1', parts);
    const config = sha(parts.config);
    await tamper(config);
    const run = await http.post('/api/v1/maintenance/fsck').expect(200);
    const body = run.body as {
      task: string;
      status: string;
      stats: Record<string, number>;
      freed: Record<string, number>;
      detail?: Record<string, string>;
    };
    expect(body).toMatchObject({ task: 'fsck', status: 'succeeded', freed: { quarantined: 1 } });
    expect(body.stats.quarantined).toBe(1);
    expect(body.stats.ok).toBe(body.stats.scanned - 1);
    expect(body.stats.scanned).toBeGreaterThanOrEqual(3);
    expect(body.detail?.quarantined).toContain(config);
    const res = await http.get(`/v2/integrity/fsck/blobs/${config}`).expect(404);
    expect(errorOf(res).code).toBe('BLOB_UNKNOWN');
    // The intact layer is still served; a second fsck finds nothing more.
    await http.get(`/v2/integrity/fsck/blobs/${sha(parts.layer)}`).expect(200);
    const again = await http.post('/api/v1/maintenance/fsck').expect(200);
    expect((again.body as { stats: Record<string, number> }).stats.quarantined).toBe(0);
    const runs = await http.get('/api/v1/maintenance/runs').expect(200);
    expect((runs.body as { task: string }[]).filter((r) => r.task === 'fsck')).toHaveLength(2);
  });
});

/** Collects a response body as bytes, whatever its content type. */
function binary(res: request.Response, done: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}
