import type { Redis } from 'ioredis';
import { QueueName } from '@stratum/contracts';
import { QUEUE_PREFIX } from './redis';

const WORKER_QUEUE_META = new RegExp(`^${QUEUE_PREFIX}:${QueueName.Commit}\\.([A-Za-z0-9_.-]+):meta$`);

/**
 * Worker ids of every per-worker commit queue in Redis (BullMQ keeps a `meta` key per queue),
 * live or not: the queue of a worker that is gone outlives it.
 */
export async function workerQueueIds(redis: Redis): Promise<string[]> {
  const ids: string[] = [];
  let cursor = '0';
  let rounds = 0;
  do {
    const [next, keys] = await redis.scan(
      cursor,
      'MATCH',
      `${QUEUE_PREFIX}:${QueueName.Commit}.*:meta`,
      'COUNT',
      1000,
    );
    cursor = next;
    for (const key of keys) {
      const m = WORKER_QUEUE_META.exec(key);
      if (m !== null) {
        ids.push(m[1]);
      }
    }
    // Bounded: a keyspace of millions is walked at most 1,000 rounds per call.
  } while (cursor !== '0' && ++rounds < 1000);
  return [...new Set(ids)].sort();
}
