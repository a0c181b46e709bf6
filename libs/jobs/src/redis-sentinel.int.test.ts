// Redis high availability (issue 20): a real redis-server primary and replica watched by three
// sentinels (redis-server --sentinel) on free loopback ports. BullMQ queue and worker connect
// through createRedis with the sentinel config; the primary is SIGKILLed while jobs run; the
// sentinels promote the replica, the connections follow it, and every job added (and
// replicated) before the kill and every job added after it completes exactly once.
import { Queue, Worker } from 'bullmq';
import { loadConfig } from '@stratum/config';
import { SentinelRedis, startSentinelRedis, waitForValue } from '@stratum/testing';
import { createRedis, QUEUE_PREFIX } from './redis';

jest.setTimeout(120_000);

let ha: SentinelRedis | undefined;

afterAll(async () => {
  await ha?.close();
});

it('jobs outlive the primary: the replica is promoted, every job completes once', async () => {
  ha = await startSentinelRedis('stratum');
  const { sentinelPorts, replicaPort } = ha;
  const config = loadConfig({
    REDIS_URL: 'redis://127.0.0.1:1',
    REDIS_SENTINELS: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
    REDIS_SENTINEL_NAME: 'stratum',
  });
  expect(config.redisSentinel?.sentinels).toHaveLength(3);
  const producer = createRedis(config.redisUrl, 'sentinel-test-producer', config.redisSentinel);
  const consumer = createRedis(config.redisUrl, 'sentinel-test-consumer', config.redisSentinel);
  const queue = new Queue('sentinel-test', { connection: producer, prefix: QUEUE_PREFIX });
  const done = new Map<string, number>();
  const worker = new Worker(
    'sentinel-test',
    async (job) => {
      await new Promise((r) => setTimeout(r, 50));
      done.set(job.id!, (done.get(job.id!) ?? 0) + 1);
    },
    { connection: consumer, prefix: QUEUE_PREFIX, concurrency: 2, lockDuration: 8000, stalledInterval: 2000 },
  );
  worker.on('error', () => undefined);
  queue.on('error', () => undefined);
  try {
    const before = Array.from({ length: 40 }, (_, i) => `before-${i}`);
    for (const id of before) {
      await queue.add('job', {}, { jobId: id, attempts: 5, backoff: { type: 'fixed', delay: 500 } });
    }
    // Acknowledged and on the replica before the primary dies (replication is asynchronous:
    // what the replica has not received is lost with the primary, Sentinel or not).
    expect(Number(await producer.call('WAIT', '1', '5000'))).toBe(1);
    const killedAt = Date.now();
    await ha.killPrimary();
    const after = Array.from({ length: 20 }, (_, i) => `after-${i}`);
    for (const id of after) {
      // Each add waits for the promoted primary (maxRetriesPerRequest: null).
      await queue.add('job', {}, { jobId: id, attempts: 5, backoff: { type: 'fixed', delay: 500 } });
    }
    const failoverMs = Date.now() - killedAt;
    await waitForValue(
      'every job to complete',
      async () => ([...before, ...after].every((id) => done.has(id)) ? true : undefined),
      60_000,
    );
    expect([...before, ...after].filter((id) => done.get(id) !== 1)).toEqual([]);
    const promoted = await ha.connect(replicaPort);
    expect(await promoted.info('replication')).toContain('role:master');
    promoted.disconnect();
    process.stdout.write(
      `redis sentinel: primary killed, adds resumed on the promoted replica after ${failoverMs} ms; ${before.length + after.length} jobs, each once\n`,
    );
  } finally {
    await worker.close(true);
    await queue.close();
    producer.disconnect();
    consumer.disconnect();
  }
});
