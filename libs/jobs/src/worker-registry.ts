import { Redis } from 'ioredis';

/** Redis hash: worker id -> what it advertises (JSON {@link WorkerAdvert}). */
export const WORKER_ADVERTS_KEY = 'stratum:workers:platforms';

/**
 * Redis hash: worker id -> when it was last known alive (ms since the epoch): its last
 * heartbeat (advert), or the moment it withdrew. Never expires by itself: a worker that never
 * comes back stays listed (with what it left) until `DELETE /api/v1/workers/:id` forgets it.
 */
export const WORKER_SEEN_KEY = 'stratum:workers:seen';

/** A worker as the registry knows it: live, or gone since `goneSince` (ms; null: not known). */
export interface WorkerLiveness {
  readonly workerId: string;
  readonly live: boolean;
  /** Its advert while live. */
  readonly platforms: string[];
  /** Its last heartbeat before its advert lapsed, or when it withdrew; null while live. */
  readonly goneSince: number | null;
}

/**
 * A worker's liveness record (its heartbeat): what it builds for and runs, written at `seenAt`
 * and true until `expiresAt` (ms since the epoch).
 */
export interface WorkerAdvert {
  readonly workerId: string;
  readonly platforms: string[];
  readonly expiresAt: number;
  /** When it was written (absent in the adverts of older workers). */
  readonly seenAt?: number;
  /** Ids of the jobs it was running then (absent in the adverts of older workers). */
  readonly jobs?: string[];
}

/**
 * The workers' liveness records. Each worker re-advertises (its heartbeat) every third of its
 * TTL while it runs (WORKER_LOST_MS / 8, the record lasting 3/8 of it) and withdraws on
 * shutdown; a crashed worker's advert lapses one TTL after its last heartbeat. The API reads it
 * to refuse at once a build asking for a platform no worker runs and to give up on containers of
 * a gone worker; a worker taking a build over reads the old worker's record.
 */
export class WorkerRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly now: () => number = Date.now,
  ) {}

  /** A heartbeat: `workerId` is alive for `ttlMs` from now, building for `platforms`, running `jobs`. */
  async advertise(
    workerId: string,
    platforms: readonly string[],
    ttlMs: number,
    jobs: readonly string[] = [],
  ): Promise<void> {
    const seenAt = this.now();
    const advert: WorkerAdvert = {
      workerId,
      platforms: [...platforms],
      expiresAt: seenAt + ttlMs,
      seenAt,
      jobs: [...jobs],
    };
    await this.redis
      .multi()
      .hset(WORKER_ADVERTS_KEY, workerId, JSON.stringify(advert))
      .hset(WORKER_SEEN_KEY, workerId, String(seenAt))
      .exec();
  }

  /** `workerId`'s liveness record while it lasts; null once it lapsed or was withdrawn. */
  async advert(workerId: string): Promise<WorkerAdvert | null> {
    const advert = parseAdvert(await this.redis.hget(WORKER_ADVERTS_KEY, workerId));
    return advert !== null && advert.expiresAt > this.now() ? advert : null;
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
      const advert = parseAdvert(text);
      if (advert === null || !(advert.expiresAt > now)) {
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

/** A stored advert, or null when it is not one (malformed, or written by something else). */
function parseAdvert(text: string | null): WorkerAdvert | null {
  if (text === null) {
    return null;
  }
  try {
    const advert = JSON.parse(text) as WorkerAdvert | null;
    return advert !== null &&
      typeof advert === 'object' &&
      Array.isArray(advert.platforms) &&
      typeof advert.expiresAt === 'number'
      ? advert
      : null;
  } catch {
    return null;
  }
}
