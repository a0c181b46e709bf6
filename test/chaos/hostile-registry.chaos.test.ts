import { Readable } from 'node:stream';
import request from 'supertest';
import { PushRecord } from '@stratum/contracts';
import { FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { freePort } from '@stratum/testing';
import { startStack, StackHandle } from '../support/stack';
import { makeImage, OCI_INDEX, OCI_MANIFEST, OciImageParts, sha } from '../e2e/registry-fixtures';
import { alive, pollFor } from './chaos-support';

// Hostile registry input (issue 13 item 4): an index of 2,000 entries, each an index of 2,000
// entries, by reference (the same few small documents, ~0.6 MB in all, naming each other: 4
// million manifests to a walk without a memo). Its PUT is refused with a clear 400; stored
// anyway (as data accepted before the limits, or written by another tool), a push job of it fails
// fast naming the limit and is not retried; an index within the limits whose 1,000 entries all
// name the same index of 1,000 entries (a million visits without the memo) pushes in moments.
// The API and the worker stay up and serve the next push.

function index(children: string[], name: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: children.map((digest) => ({
        mediaType: OCI_INDEX,
        digest,
        size: 1,
        platform: { architecture: 'amd64', os: 'linux' },
      })),
      annotations: { 'org.example.name': name },
    }),
  );
}

describe('hostile registry input (chaos)', () => {
  let stack: StackHandle;
  let http: ReturnType<typeof request>;
  let image: OciImageParts;

  async function pushBlob(repository: string, bytes: Buffer): Promise<void> {
    await http
      .post(`/v2/${repository}/blobs/uploads/?digest=${sha(bytes)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(bytes)
      .expect(201);
  }

  async function putManifest(repository: string, ref: string, bytes: Buffer, type: string) {
    return http
      .put(`/v2/${repository}/manifests/${ref}`)
      .set('Content-Type', type)
      .send(bytes.toString('utf8'));
  }

  async function pushAndWait(ref: string, target: string, timeoutMs: number): Promise<PushRecord> {
    const res = await http
      .post(`/api/v1/images/${encodeURIComponent(ref)}/push`)
      .send({ targets: [target] })
      .expect(202);
    const id = (res.body as { id: string }).id;
    return pollFor(
      `push ${id} to finish`,
      async () => {
        const r = (await http.get(`/api/v1/pushes/${id}`).expect(200)).body as PushRecord;
        return r.state === 'succeeded' || r.state === 'failed' ? r : undefined;
      },
      timeoutMs,
      100,
    );
  }

  beforeAll(async () => {
    // Three attempts: a push that failed on a limit must not be tried again.
    stack = await startStack({ name: 'hostile-registry', env: { JOB_ATTEMPTS: '3' } });
    http = request(stack.api.url);
    image = await makeImage(stack.dataDir, { 'etc/hostile.txt': 'hostile\n' });
    await pushBlob('hostile/fan', image.config);
    await pushBlob('hostile/fan', image.layer);
    await putManifest('hostile/fan', 'base', image.manifest, OCI_MANIFEST).then((r) =>
      expect(r.status).toBe(201),
    );
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('refuses to store an index over the limits (400 MANIFEST_INVALID naming the limit)', async () => {
    const middle = index(Array<string>(2000).fill(image.digest), 'middle');
    const res = await putManifest('hostile/fan', 'middle', middle, OCI_INDEX);
    expect(res.status).toBe(400);
    const error = (res.body as { errors: { code: string; message: string }[] }).errors[0];
    expect(error.code).toBe('MANIFEST_INVALID');
    expect(error.message).toContain('2000 entries');
    expect(error.message).toContain('maxEntries=1000');
  });

  it('a push job of a 2,000 x 2,000 index fails fast naming the limit, is not retried, and the stack stays up', async () => {
    // Written straight into the store, as data accepted before the limits existed would be.
    const blobs = new FsBlobStore(`${stack.dataDir}/store`);
    const repos = new FsRepositoryStore(`${stack.dataDir}/store`);
    const middle = index(Array<string>(2000).fill(image.digest), 'middle');
    const top = index(Array<string>(2000).fill(sha(middle)), 'top');
    for (const doc of [middle, top]) {
      await blobs.put(Readable.from([doc]));
      await repos.linkManifest('hostile/fan', sha(doc) as `sha256:${string}`);
    }
    await repos.setTag('hostile/fan', 'huge', sha(top) as `sha256:${string}`);

    const started = Date.now();
    const record = await pushAndWait('hostile/fan:huge', 'hostile/copy:huge', 30_000);
    const elapsed = Date.now() - started;
    expect(record.state).toBe('failed');
    expect(record.error).toContain('maxEntries=1000');
    expect(record.error).toContain('2000 entries');
    expect(record.attempts).toBe(1);
    expect(elapsed).toBeLessThan(10_000);
    // Nothing of it reached the target.
    await http.get('/v2/hostile/copy/manifests/huge').expect(404);
    console.log(`2000x2000 index push failed after ${elapsed} ms: ${record.error}`);

    // To another registry: refused on the walk, before any connection (nothing listens on that
    // port; a connection error would be transient and retried).
    const port = await freePort();
    const remote = await pushAndWait('hostile/fan:huge', `127.0.0.1:${port}/copy:huge`, 30_000);
    expect(remote).toMatchObject({ state: 'failed', attempts: 1 });
    expect(remote.error).toContain('maxEntries=1000');

    await http.get('/healthz').expect(200);
    expect(alive(stack.worker!.process.pid!)).toBe(true);
  }, 60_000);

  it('an index of 1,000 entries naming one index of 1,000 entries pushes in moments (each manifest once)', async () => {
    const middle = index(Array<string>(1000).fill(image.digest), 'middle-1000');
    expect((await putManifest('hostile/fan', sha(middle), middle, OCI_INDEX)).status).toBe(201);
    const top = index(Array<string>(1000).fill(sha(middle)), 'top-1000');
    expect((await putManifest('hostile/fan', 'wide', top, OCI_INDEX)).status).toBe(201);

    const started = Date.now();
    const record = await pushAndWait('hostile/fan:wide', 'hostile/copy:wide', 30_000);
    const elapsed = Date.now() - started;
    expect(record).toMatchObject({ state: 'succeeded', error: null, attempts: 1 });
    expect(record.targets[0].blobs.linked).toBe(2); // config and layer, once each
    expect(elapsed).toBeLessThan(10_000);
    const copied = await http.get('/v2/hostile/copy/manifests/wide').expect(200);
    expect(copied.headers['docker-content-digest']).toBe(sha(top));
    await http.get(`/v2/hostile/copy/manifests/${sha(middle)}`).expect(200);
    console.log(`1000x1000 index push succeeded after ${elapsed} ms`);

    // The worker still serves an ordinary push.
    const next = await pushAndWait('hostile/fan:base', 'hostile/next:v1', 30_000);
    expect(next.state).toBe('succeeded');
    // Cancelling a finished push leaves it as it is; an unknown one is 404.
    const cancelled = await http.delete(`/api/v1/pushes/${next.id}`).expect(202);
    expect((cancelled.body as PushRecord).state).toBe('succeeded');
    expect(((await http.get(`/api/v1/pushes/${next.id}`).expect(200)).body as PushRecord).state).toBe(
      'succeeded',
    );
    await http.delete('/api/v1/pushes/00000000-0000-4000-8000-000000000000').expect(404);
    expect(alive(stack.worker!.process.pid!)).toBe(true);
  }, 60_000);
});
