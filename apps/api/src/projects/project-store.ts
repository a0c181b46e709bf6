import type { Redis } from 'ioredis';
import { ProjectTrigger, ProjectView, StratumError } from '@stratum/contracts';
import { defaultForgeTarget, ForgeTarget, GitCredentials } from '@stratum/git';
import { RedisKeys } from '@stratum/jobs';

/** A project as stored: the view plus its secrets. */
export interface StoredProject extends Omit<ProjectView, 'hasSecret' | 'hasCredentials' | 'hasStatusToken'> {
  readonly secret: string | null;
  readonly credentials: GitCredentials | null;
  /** The forge token of commit statuses, sealed (SecretBox, purpose `stratum-forge-tokens`). */
  readonly statusToken?: string | null;
  /** The key signing this project's notifications, sealed like statusToken. */
  readonly notifySecret?: string | null;
}

/** Key purpose of the SecretBox sealing forge tokens (AUTH_SECRET-derived, as push credentials). */
export const FORGE_TOKEN_PURPOSE = 'stratum-forge-tokens';

/** Where the project's forge API and repository are: its fields over what its URL says. */
export function forgeTargetOf(project: StoredProject): ForgeTarget | null {
  const forge = project.forge ?? null;
  if (forge === null) {
    return null;
  }
  const derived = defaultForgeTarget(forge, project.repoUrl);
  const apiUrl = project.forgeApiUrl ?? derived?.apiUrl ?? null;
  const repository = project.forgeRepository ?? derived?.repository ?? null;
  return apiUrl === null || repository === null ? null : { forge, apiUrl, repository };
}

/** Redis keys of projects and webhooks, in one place. */
export const ProjectKeys = {
  project: RedisKeys.project,
  index: 'stratum:projects',
  delivery: (forge: string, id: string) => `stratum:hooks:delivery:${forge}:${id}`,
  /** The SHA-256 of a delivery's signed body: a replay under a fresh delivery id is still seen. */
  deliveryBody: (forge: string, sha256: string) => `stratum:hooks:body:${forge}:${sha256}`,
} as const;

/** The public face of a stored project: secrets reduced to "is set". */
export function projectView(p: StoredProject): ProjectView {
  const { secret, credentials, statusToken, notifySecret: _sealed, ...rest } = p;
  return {
    ...rest,
    forge: rest.forge ?? null,
    forgeApiUrl: rest.forgeApiUrl ?? null,
    forgeRepository: rest.forgeRepository ?? null,
    hasSecret: secret !== null,
    hasCredentials: credentials !== null,
    hasStatusToken: statusToken !== undefined && statusToken !== null,
  };
}

/** Projects in Redis: one JSON value per project and a set of names. */
export class ProjectStore {
  private txConn: Redis | null = null;
  private txChain: Promise<unknown> = Promise.resolve();

  constructor(private readonly redis: Redis) {}

  /** Closes the dedicated transaction connection. */
  async close(): Promise<void> {
    await this.txChain.catch(() => undefined);
    this.txConn?.disconnect();
    this.txConn = null;
  }

  async create(project: StoredProject): Promise<void> {
    const created = await this.redis.set(ProjectKeys.project(project.name), JSON.stringify(project), 'NX');
    if (created !== 'OK') {
      throw new StratumError('PROJECT_EXISTS', `a project named "${project.name}" exists`);
    }
    await this.redis.sadd(ProjectKeys.index, project.name);
  }

  async get(name: string): Promise<StoredProject | null> {
    const json = await this.redis.get(ProjectKeys.project(name));
    return json === null ? null : (JSON.parse(json) as StoredProject);
  }

  async require(name: string): Promise<StoredProject> {
    const p = await this.get(name);
    if (p === null) {
      throw new StratumError('PROJECT_UNKNOWN', `no project named "${name}"`);
    }
    return p;
  }

  /**
   * Applies `change` atomically (WATCH/MULTI, retried when another writer got there first).
   * PROJECT_UNKNOWN when absent.
   */
  update(name: string, change: (p: StoredProject) => StoredProject): Promise<StoredProject> {
    // WATCH is per connection: this process's updates go one at a time over a dedicated one.
    const next = this.txChain.then(() => this.updateNow(name, change));
    this.txChain = next.catch(() => undefined);
    return next;
  }

  private async updateNow(name: string, change: (p: StoredProject) => StoredProject): Promise<StoredProject> {
    const key = ProjectKeys.project(name);
    const conn = (this.txConn ??= this.redis.duplicate());
    for (let attempt = 0; attempt < 20; attempt++) {
      await conn.watch(key);
      const json = await conn.get(key);
      if (json === null) {
        await conn.unwatch();
        throw new StratumError('PROJECT_UNKNOWN', `no project named "${name}"`);
      }
      let next: StoredProject;
      try {
        next = change(JSON.parse(json) as StoredProject);
      } catch (err) {
        await conn.unwatch();
        throw err;
      }
      const done = await conn.multi().set(key, JSON.stringify(next)).exec();
      if (done !== null) {
        return next;
      }
    }
    throw new StratumError('UNAVAILABLE', `project "${name}" is being changed too often; try again`);
  }

  async recordTrigger(name: string, trigger: ProjectTrigger): Promise<void> {
    await this.update(name, (p) => ({ ...p, lastTrigger: trigger })).catch(() => undefined);
  }

  async delete(name: string): Promise<boolean> {
    const [[, removed]] = (await this.redis
      .multi()
      .del(ProjectKeys.project(name))
      .srem(ProjectKeys.index, name)
      .exec()) as [[Error | null, number], [Error | null, number]];
    return removed > 0;
  }

  async list(): Promise<StoredProject[]> {
    const names = (await this.redis.smembers(ProjectKeys.index)).sort();
    if (names.length === 0) {
      return [];
    }
    const values = await this.redis.mget(names.map(ProjectKeys.project));
    return values.flatMap((json) => (json === null ? [] : [JSON.parse(json) as StoredProject]));
  }
}
