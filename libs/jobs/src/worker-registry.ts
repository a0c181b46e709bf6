import { Redis } from 'ioredis';

/** Redis hash: worker id -> what it advertises (JSON {@link WorkerAdvert}). */
export const WORKER_ADVERTS_KEY = 'stratum:workers:platforms';

/** What a live worker says it can build for, until `expiresAt` (ms since the epoch). */
export interface WorkerAdvert {
  readonly workerId: string;
  readonly platforms: string[];
  readonly expiresAt: number;
}

/**
 * Which platforms the live workers build for. Each worker re-advertises every third of its
 * TTL while it runs and withdraws on shutdown; a crashed worker's advert lapses after the TTL.
 * The API reads it to refuse at once a build asking for a platform no worker runs.
 */
export class WorkerRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly now: () => number = Date.now,
  ) {}

  async advertise(workerId: string, platforms: readonly string[], ttlMs: number): Promise<void> {
    const advert: WorkerAdvert = { workerId, platforms: [...platforms], expiresAt: this.now() + ttlMs };
    await this.redis.hset(WORKER_ADVERTS_KEY, workerId, JSON.stringify(advert));
  }

  async withdraw(workerId: string): Promise<void> {
    await this.redis.hdel(WORKER_ADVERTS_KEY, workerId);
  }

  /** Adverts not yet expired (expired ones are dropped from the hash on the way). */
  async live(): Promise<WorkerAdvert[]> {
    const all = await this.redis.hgetall(WORKER_ADVERTS_KEY);
    const now = this.now();
    const out: WorkerAdvert[] = [];
    const stale: string[] = [];
    for (const [id, text] of Object.entries(all)) {
      let advert: WorkerAdvert | null;
      try {
        advert = JSON.parse(text) as WorkerAdvert;
      } catch {
        advert = null;
      }
      if (advert === null || !Array.isArray(advert.platforms) || !(advert.expiresAt > now)) {
        stale.push(id);
      } else {
        out.push(advert);
      }
    }
    if (stale.length > 0) {
      await this.redis.hdel(WORKER_ADVERTS_KEY, ...stale);
    }
    return out;
  }

  /** Every platform some live worker builds for. */
  async platforms(): Promise<Set<string>> {
    return new Set((await this.live()).flatMap((a) => a.platforms));
  }
}
