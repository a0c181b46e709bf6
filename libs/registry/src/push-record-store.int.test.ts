import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { BlobDigest, FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { PushState, QueueName, StratumError } from '@stratum/contracts';
import { createQueue, createRedis, PushProducer } from '@stratum/jobs';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { ImagePusher, newPushRecord, PushFailedError } from './image-pusher';
import { ImageTransfer } from './image-transfer';
import { RegistryClients } from './registry-clients';
import { PushKeys, PushRecordStore } from './push-record-store';
import { pushIdForBuild, PushSubmitter } from './push-submitter';

const SECRET = 'a-secret-of-at-least-thirty-two-characters';
const digest = `sha256:${'a'.repeat(64)}` as const;
const creds = { username: 'pusher', password: 'very-secret-password' };

function pushData(
  pushId: string = randomUUID(),
  targets = ['ns/copy:v1', 'registry.example:5000/team/app:v1'],
) {
  return { pushId, manifestDigest: digest, sourceRepository: 'ns/app', targets };
}

// Push records and credentials over a real redis-server, as the API and a worker share them.
describe('PushRecordStore and PushSubmitter (real redis)', () => {
  let server: RedisServerHandle;
  let redis: Redis;
  const opened: PushRecordStore[] = [];

  function store(secret: string | null = SECRET, conn: Redis = redis): PushRecordStore {
    const s = new PushRecordStore(conn, 600, secret);
    opened.push(s);
    return s;
  }

  beforeAll(async () => {
    server = await startRedisServer();
    redis = createRedis(server.url, 'push-records');
  });
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
    redis.disconnect();
    await server.stop();
  });

  it('loses no update when two processes change the same record at once', async () => {
    // Two stores on two connections: the API's and a worker's.
    const other = createRedis(server.url, 'push-records-other');
    try {
      const a = store();
      const b = store(SECRET, other);
      const data = pushData();
      await a.create(newPushRecord(data), null);
      const bump = (s: PushRecordStore, target: number) =>
        s.update(data.pushId, (r) => {
          r.attempts += 1;
          r.targets[target].blobs.uploaded += 1;
        });
      await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? bump(a, 0) : bump(b, 1))));
      const record = await a.get(data.pushId);
      expect(record?.attempts).toBe(40);
      expect(record?.targets.map((t) => t.blobs.uploaded)).toEqual([20, 20]);
      // Updates keep the record's expiry.
      const ttl = await redis.ttl(PushKeys.push(data.pushId));
      expect(ttl).toBeGreaterThan(590);
      expect(ttl).toBeLessThanOrEqual(600);
    } finally {
      other.disconnect();
    }
  });

  it('creates a record once: a second create keeps the first and its progress', async () => {
    const s = store();
    const data = pushData();
    expect(await s.create(newPushRecord(data, 'first'), null)).toBe(true);
    await s.update(data.pushId, (r) => {
      r.state = PushState.Running;
    });
    expect(await s.create(newPushRecord(data, 'second'), null)).toBe(false);
    expect(await s.get(data.pushId)).toMatchObject({ source: 'first', state: PushState.Running });
    expect(await s.update(randomUUID(), () => undefined)).toBeNull();
  });

  it('keeps credentials only encrypted under AUTH_SECRET; another secret cannot read them', async () => {
    const s = store();
    const data = pushData();
    await s.create(newPushRecord(data), creds);
    const raw = (await redis.get(PushKeys.credentials(data.pushId)))!;
    expect(raw).toMatch(/^gcm:/);
    const decoded = Buffer.from(raw.slice(4), 'base64').toString('latin1');
    for (const text of [raw, decoded]) {
      expect(text).not.toContain(creds.password);
      expect(text).not.toContain(creds.username);
    }
    expect(await redis.ttl(PushKeys.credentials(data.pushId))).toBeGreaterThan(590);
    expect(await s.credentials(data.pushId)).toEqual(creds);
    expect(await store('another-secret-of-at-least-thirty-two-chars').credentials(data.pushId)).toBeNull();
    expect(await store(null).credentials(data.pushId)).toBeNull();
    await s.dropCredentials(data.pushId);
    expect(await redis.exists(PushKeys.credentials(data.pushId))).toBe(0);
  });

  it('refuses credentials without AUTH_SECRET, naming it, and writes nothing', async () => {
    const s = store(null);
    const data = pushData();
    const err = await s.create(newPushRecord(data), creds).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StratumError);
    expect(err).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('AUTH_SECRET') });
    expect(await redis.exists(PushKeys.push(data.pushId), PushKeys.credentials(data.pushId))).toBe(0);
    // Without credentials a push is recorded as usual.
    expect(await s.create(newPushRecord(data), null)).toBe(true);
  });

  describe('PushSubmitter', () => {
    let producer: PushProducer;

    beforeAll(() => {
      producer = new PushProducer(createQueue(QueueName.Push, redis), {
        attempts: 3,
        retentionSeconds: 600,
      });
    });
    afterAll(() => producer.close());

    async function jobsOf(pushId: string): Promise<number> {
      const jobs = await producer.queue.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed']);
      return jobs.filter((j) => j.data.pushId === pushId).length;
    }

    it('submitting a build’s push twice records and enqueues it once', async () => {
      const submitter = new PushSubmitter(store(), producer);
      const buildId = randomUUID();
      const pushId = pushIdForBuild(buildId);
      expect(pushId).toBe(pushIdForBuild(buildId));
      expect(pushId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(pushIdForBuild(randomUUID())).not.toBe(pushId);

      const submission = { ...pushData(pushId), source: 'ns/app:v1' };
      const first = await submitter.submit(submission);
      expect(first).toMatchObject({ id: pushId, state: PushState.Queued, source: 'ns/app:v1' });
      await store().update(pushId, (r) => {
        r.attempts = 1;
      });
      const again = await submitter.submit({ ...submission, targets: ['ns/other:v1'] });
      expect(again).toMatchObject({ id: pushId, attempts: 1 });
      expect(again.targets.map((t) => t.target)).toEqual(submission.targets);
      expect(await jobsOf(pushId)).toBe(1);
      expect((await producer.queue.getJob(pushId))?.data).toEqual(pushData(pushId));
    });

    it('refuses a bad target, a target under a mirror prefix, or credentials it cannot keep', async () => {
      const submitter = new PushSubmitter(store(null), producer, {
        localRegistries: ['stratum.example:8443'],
        mirrorPrefixes: ['hub'],
      });
      const refused = async (targets: string[], credentials: typeof creds | null = null) => {
        const pushId = randomUUID();
        const err = await submitter
          .submit({ ...pushData(pushId, targets), credentials })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StratumError);
        expect(await redis.exists(PushKeys.push(pushId))).toBe(0);
        expect(await jobsOf(pushId)).toBe(0);
        return (err as StratumError).message;
      };
      expect(await refused(['Bad Target'])).toContain('"Bad Target"');
      expect(await refused(['hub/library/alpine:3'])).toMatch(
        /"hub\/library\/alpine:3".*pull-through mirror prefix "hub\/"/,
      );
      // Our own public address names our registry, so the mirror is there too.
      expect(await refused(['stratum.example:8443/hub/x:1'])).toMatch(/mirror prefix "hub\/"/);
      expect(await refused(['registry.example/team/app:1'], creds)).toMatch(/AUTH_SECRET/);
      // Other registries' `hub/…` repositories are theirs, and `hubble/…` is not under `hub/`.
      const ok = await submitter.submit(pushData(randomUUID(), ['registry.example/hub/x:1', 'hubble/x:1']));
      expect(ok.state).toBe(PushState.Queued);
    });
  });

  describe('ImagePusher cancel and progress', () => {
    let root: string;
    let pusher: ImagePusher;
    let records: PushRecordStore;
    let repos: FsRepositoryStore;
    let top: BlobDigest;
    let blobCount: number;
    let transfer: ImageTransfer;

    const sha256 = (b: Buffer): BlobDigest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

    beforeAll(async () => {
      root = await mkdtemp(join(tmpdir(), 'stratum-pusher-'));
      const blobs = new FsBlobStore(root);
      await blobs.init();
      repos = new FsRepositoryStore(root);
      const put = async (b: Buffer): Promise<BlobDigest> => (await blobs.put(Readable.from([b]))).digest;
      // An index of 20 images, each with its own config and layer: 40 blobs to link.
      const children: BlobDigest[] = [];
      for (let i = 0; i < 20; i++) {
        const config = Buffer.from(`{"config":${i}}`);
        const layer = Buffer.from(`layer ${i}`);
        for (const b of [config, layer]) {
          await repos.linkBlob('src/app', await put(b));
        }
        const manifest = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            config: {
              mediaType: 'application/vnd.oci.image.config.v1+json',
              digest: sha256(config),
              size: config.length,
            },
            layers: [
              {
                mediaType: 'application/vnd.oci.image.layer.v1.tar',
                digest: sha256(layer),
                size: layer.length,
              },
            ],
          }),
        );
        children.push(await put(manifest));
        await repos.linkManifest('src/app', children[i]);
      }
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: children.map((digest) => ({
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest,
            size: 1,
          })),
        }),
      );
      top = await put(index);
      await repos.linkManifest('src/app', top);
      blobCount = 40;
      records = store();
      transfer = new ImageTransfer(blobs, repos);
      pusher = new ImagePusher(transfer, new RegistryClients(), records);
    });
    afterAll(async () => {
      await rm(root, { recursive: true, force: true });
    });

    const job = (targets: string[]) => ({
      pushId: randomUUID(),
      manifestDigest: top,
      sourceRepository: 'src/app',
      targets,
    });

    it('a push asked to stop before it runs fails "push cancelled", final, copying nothing', async () => {
      const data = job(['dst/before:v1']);
      await records.create(newPushRecord(data), null);
      await records.requestCancel(data.pushId);
      const err = await pusher.run(data, { lastAttempt: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PushFailedError);
      expect(err).toMatchObject({ message: 'push cancelled', transient: false });
      expect(await records.get(data.pushId)).toMatchObject({
        state: PushState.Failed,
        error: 'push cancelled',
        targets: [{ state: PushState.Failed, error: 'push cancelled' }],
      });
      expect(await repos.listManifests('dst/before')).toEqual([]);
    });

    it('a cancel while running stops between blobs (final); an abort without one (shutdown) is retried', async () => {
      const data = job(['dst/during:v1']);
      await records.create(newPushRecord(data), null);
      const ac = new AbortController();
      let linked = 0;
      const original = transfer.pushLocal.bind(transfer);
      const spy = jest
        .spyOn(transfer, 'pushLocal')
        .mockImplementation((source, digest, target, tag, progress, signal) =>
          original(
            source,
            digest,
            target,
            tag,
            (e) => {
              progress?.(e);
              if (++linked === 5) {
                void records.requestCancel(data.pushId).then(() => ac.abort('cancelled'));
              }
            },
            signal,
          ),
        );
      try {
        const err = await pusher
          .run(data, { lastAttempt: false, signal: ac.signal })
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ message: 'push cancelled', transient: false });
        expect(linked).toBeLessThan(blobCount);
        expect(await repos.getTag('dst/during', 'v1')).toBeNull();

        const shutdown = job(['dst/shutdown:v1']);
        await records.create(newPushRecord(shutdown), null);
        const ac2 = new AbortController();
        ac2.abort('shutdown');
        const err2 = await pusher
          .run(shutdown, { lastAttempt: false, signal: ac2.signal })
          .catch((e: unknown) => e);
        expect(err2).toMatchObject({ transient: true });
        expect((await records.get(shutdown.pushId))?.state).toBe(PushState.Queued);
      } finally {
        spy.mockRestore();
      }
    });

    it('shows blob counts on the record while a push runs', async () => {
      const data = job(['dst/progress:v1']);
      await records.create(newPushRecord(data), null);
      const seen: number[] = [];
      const original = transfer.pushLocal.bind(transfer);
      const spy = jest
        .spyOn(transfer, 'pushLocal')
        .mockImplementation(async (source, digest, target, tag, progress, signal) => {
          let n = 0;
          await original(
            source,
            digest,
            target,
            tag,
            (e) => {
              progress?.(e);
              n++;
            },
            signal,
          );
          // Hold the push open past one progress interval, then read what the record says.
          await new Promise((r) => setTimeout(r, 1500));
          seen.push(n, (await records.get(data.pushId))?.targets[0].blobs.linked ?? -1);
        });
      try {
        await pusher.run(data, { lastAttempt: true });
      } finally {
        spy.mockRestore();
      }
      expect(seen).toEqual([blobCount, blobCount]);
      expect(await records.get(data.pushId)).toMatchObject({ state: PushState.Succeeded });
    });
  });
});
