import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@stratum/config';
import { freePort, RedisServerHandle, startRedisServer } from '@stratum/testing';
import { createApiApp } from '../../apps/api/src/bootstrap';
import { makeImage, OCI_MANIFEST, OciImageParts, sha } from './registry-fixtures';

// Registry integrity end to end (issue 13): the real API, a real redis-server and the fs store in
// a temp DATA_DIR, driven over HTTP. A blob a manifest uses cannot be deleted from under it.

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

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-integrity-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-integrity-work-'));
    const config = loadConfig({
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      LOG_LEVEL: 'error',
      PRETTY_LOGS: 'false',
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
});
