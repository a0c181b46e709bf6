import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { PushState, QueueName, StratumError } from '@stratum/contracts';
import { createQueue, createRedis, PushProducer } from '@stratum/jobs';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { newPushRecord } from './image-pusher';
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
});
