import type { Redis } from 'ioredis';
import { isSafeName } from '@stratum/confine';
import { StratumError } from '@stratum/contracts';
import {
  BuildSecretStore,
  checkSshKeys,
  MAX_BUILD_SECRET_BYTES,
  MAX_BUILD_SECRETS,
  parseSshPrivateKey,
  SecretBox,
  sshPublicKeyLine,
} from '@stratum/jobs';

/** What `GET /api/v1/projects/:name/secrets` shows: names, and the public half of deploy keys. */
export interface ProjectSecretsView {
  readonly secrets: string[];
  readonly ssh: { readonly id: string; readonly publicKeys: string[] }[];
}

const hashKey = (project: string): string => `stratum:project-secrets:${project}`;
const field = (kind: 'secret' | 'ssh', id: string): string => `${kind}:${id}`;

/**
 * A project's build secrets and ssh deploy keys, for the builds its pushes, schedule and manual
 * triggers start: one Redis hash per project, each value AES-256-GCM sealed under AUTH_SECRET
 * (as build secrets and push credentials are; never readable back through the API). A build of
 * the project gets a copy as its own build-secret bundle, deleted when that build ends.
 */
export class ProjectSecretStore {
  private readonly box: SecretBox;

  constructor(
    private readonly redis: Redis,
    authSecret: string | null,
    private readonly bundles: BuildSecretStore,
  ) {
    this.box = new SecretBox(authSecret, 'stratum-project-secrets');
  }

  private requireKey(): void {
    if (!this.box.available) {
      throw new StratumError(
        'BAD_REQUEST',
        'project secrets cannot be accepted: AUTH_SECRET is not set on this service (it keys their encryption at rest); ask the operator to set it',
      );
    }
  }

  private checkId(kind: 'secret' | 'ssh', id: string): void {
    if (!isSafeName(id)) {
      throw new StratumError(
        'BAD_REQUEST',
        `invalid ${kind} id ${JSON.stringify(String(id).slice(0, 80))}: expected 1-128 of [A-Za-z0-9_.-], not starting with "." or "-"`,
      );
    }
  }

  private async put(project: string, f: string, plain: Buffer): Promise<void> {
    const key = hashKey(project);
    const [exists, count] = await Promise.all([this.redis.hexists(key, f), this.redis.hlen(key)]);
    if (exists === 0 && count >= MAX_BUILD_SECRETS) {
      throw new StratumError(
        'BAD_REQUEST',
        `project "${project}" holds ${count} secrets and ssh ids, the most a build takes (${MAX_BUILD_SECRETS}); remove one first`,
      );
    }
    await this.redis.hset(key, f, this.box.seal(plain));
  }

  /** Sets (or replaces) secret `id` of `project`. */
  async setSecret(project: string, id: string, value: Buffer): Promise<void> {
    this.requireKey();
    this.checkId('secret', id);
    if (value.length > MAX_BUILD_SECRET_BYTES) {
      throw new StratumError(
        'SECRET_TOO_LARGE',
        `secret "${id}" is ${value.length} bytes, larger than the limit of ${MAX_BUILD_SECRET_BYTES} bytes`,
      );
    }
    await this.put(project, field('secret', id), value);
  }

  /** Sets (or replaces) the private key(s) of ssh id `id` (a deploy key); answers their public halves. */
  async setSsh(project: string, id: string, keys: Buffer[]): Promise<string[]> {
    this.requireKey();
    checkSshKeys(new Map([[id, keys]]));
    await this.put(
      project,
      field('ssh', id),
      Buffer.from(JSON.stringify(keys.map((k) => k.toString('base64')))),
    );
    return keys.map((k) => sshPublicKeyLine(parseSshPrivateKey(id, k)));
  }

  /** False when there was no such secret (or ssh id). */
  async remove(project: string, kind: 'secret' | 'ssh', id: string): Promise<boolean> {
    return (await this.redis.hdel(hashKey(project), field(kind, id))) > 0;
  }

  async removeAll(project: string): Promise<void> {
    await this.redis.del(hashKey(project));
  }

  private async open(project: string): Promise<{ secrets: Map<string, Buffer>; ssh: Map<string, Buffer[]> }> {
    const all = await this.redis.hgetall(hashKey(project));
    const secrets = new Map<string, Buffer>();
    const ssh = new Map<string, Buffer[]>();
    for (const [f, sealed] of Object.entries(all)) {
      const plain = this.box.open(sealed);
      if (plain === null) {
        throw new StratumError(
          'BAD_REQUEST',
          `project "${project}" holds a secret (${f}) sealed under another AUTH_SECRET; set it again`,
        );
      }
      const [kind, ...rest] = f.split(':');
      const id = rest.join(':');
      if (kind === 'ssh') {
        ssh.set(
          id,
          (JSON.parse(plain.toString('utf8')) as string[]).map((b) => Buffer.from(b, 'base64')),
        );
      } else {
        secrets.set(id, plain);
      }
    }
    return { secrets, ssh };
  }

  /** The private keys of ssh id `id` of `project` (its deploy key), or null when it has none. */
  async sshKeys(project: string, id: string): Promise<Buffer[] | null> {
    const sealed = await this.redis.hget(hashKey(project), field('ssh', id));
    if (sealed === null) {
      return null;
    }
    const plain = this.box.open(sealed);
    if (plain === null) {
      throw new StratumError(
        'BAD_REQUEST',
        `project "${project}" holds an ssh key (${id}) sealed under another AUTH_SECRET; set it again`,
      );
    }
    return (JSON.parse(plain.toString('utf8')) as string[]).map((b) => Buffer.from(b, 'base64'));
  }

  /** Names of the secrets, ssh ids with their public keys; never a value. */
  async list(project: string): Promise<ProjectSecretsView> {
    const { secrets, ssh } = await this.open(project);
    return {
      secrets: [...secrets.keys()].sort(),
      ssh: [...ssh]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([id, keys]) => ({
          id,
          publicKeys: keys.map((k) => sshPublicKeyLine(parseSshPrivateKey(id, k))),
        })),
    };
  }

  /**
   * A build-secret bundle holding a copy of the project's secrets and keys, for one build of it
   * (deleted when that build ends); null when the project has none.
   */
  async bundleFor(project: string): Promise<string | null> {
    const { secrets, ssh } = await this.open(project);
    if (secrets.size + ssh.size === 0) {
      return null;
    }
    return this.bundles.put(secrets, ssh);
  }

  /** Drops a bundle made by {@link bundleFor} whose build could not be created. */
  async dropBundle(id: string): Promise<void> {
    await this.bundles.delete(id);
  }
}
