import { Redis } from 'ioredis';

/** Redis hash: worker id -> what it advertises (JSON {@link WorkerAdvert}). */
export const WORKER_ADVERTS_KEY = 'stratum:workers:platforms';

/**
 * Redis hash: worker id -> until when it was last known alive (ms since the epoch): its last
 * advert's expiry, or the moment it withdrew. Never expires by itself: a worker that never
 * comes back stays listed (with what it left) until `DELETE /api/v1/workers/:id` forgets it.
 */
export const WORKER_SEEN_KEY = 'stratum:workers:seen';

/** A worker as the registry knows it: live, or gone since `goneSince` (ms; null: not known). */
export interface WorkerLiveness {
  readonly workerId: string;
  readonly live: boolean;
  /** Its advert while live. */
  readonly platforms: string[];
  /** When its advert lapsed or it withdrew; null while live, or for a worker never seen. */
  readonly goneSince: number | null;
}

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
    await this.redis
      .multi()
      .hset(WORKER_ADVERTS_KEY, workerId, JSON.stringify(advert))
      .hset(WORKER_SEEN_KEY, workerId, String(advert.expiresAt))
      .exec();
  }

  /** A clean shutdown: not live from now on (gone since now, until it advertises again). */
  async withdraw(workerId: string): Promise<void> {
    await this.redis
      .multi()
      .hdel(WORKER_ADVERTS_KEY, workerId)
      .hset(WORKER_SEEN_KEY, workerId, String(this.now()))
      .exec();
  }

  /**
   * Every worker ever seen (and not forgotten), plus `extra` ids (a queue or a record naming a
   * worker): live or gone since when. An id in `extra` never seen alive starts its clock now
   * (so a timeout measured from `goneSince` still ends).
   */
  async all(extra: readonly string[] = []): Promise<WorkerLiveness[]> {
    const [live, seen] = await Promise.all([this.live(), this.redis.hgetall(WORKER_SEEN_KEY)]);
    const liveById = new Map(live.map((a) => [a.workerId, a]));
    const ids = [...new Set([...Object.keys(seen), ...extra, ...liveById.keys()])].sort();
    const now = this.now();
    const out: WorkerLiveness[] = [];
    for (const id of ids) {
      const advert = liveById.get(id);
      if (advert !== undefined) {
        out.push({ workerId: id, live: true, platforms: advert.platforms, goneSince: null });
        continue;
      }
      let since = Number(seen[id]);
      if (seen[id] === undefined || !Number.isFinite(since)) {
        since = now;
        await this.redis.hsetnx(WORKER_SEEN_KEY, id, String(since));
      }
      out.push({ workerId: id, live: false, platforms: [], goneSince: Math.min(since, now) });
    }
    return out;
  }

  /** {@link all} for one worker. */
  async liveness(workerId: string): Promise<WorkerLiveness> {
    const found = (await this.all([workerId])).find((w) => w.workerId === workerId);
    return found ?? { workerId, live: false, platforms: [], goneSince: this.now() };
  }

  /** Drops every trace of `workerId` here (its advert and when it was last seen). */
  async forget(workerId: string): Promise<void> {
    await this.redis.multi().hdel(WORKER_ADVERTS_KEY, workerId).hdel(WORKER_SEEN_KEY, workerId).exec();
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
