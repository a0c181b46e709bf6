import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { isSafeName } from '@stratum/confine';
import { StratumError } from '@stratum/contracts';
import { SecretBox } from './secret-box';
import { checkSshKeys } from './ssh-keys';

/** Largest secret value, as BuildKit's: 500 KiB. */
export const MAX_BUILD_SECRET_BYTES = 500 * 1024;
/** Most secrets one build may bring. */
export const MAX_BUILD_SECRETS = 32;
/** A bundle not claimed by a finished build is gone after this long. */
export const BUILD_SECRETS_TTL_SECONDS = 24 * 3600;

const key = (id: string): string => `stratum:build-secrets:${id}`;

/** What one bundle holds: secrets by id, and private keys by ssh id (`RUN --mount=type=ssh`). */
export interface BuildSecretBundle {
  readonly secrets: Map<string, Buffer>;
  readonly ssh: Map<string, Buffer[]>;
}

/** The sealed JSON: base64 values. A bundle without `v` is an older one of secrets only. */
interface SealedBundle {
  readonly v: 2;
  readonly secrets: Record<string, string>;
  readonly ssh: Record<string, string[]>;
}

/**
 * Build secrets in Redis (ARCHITECTURE "Secrets travel beside a build, not in it"): one
 * bundle per build, AES-256-GCM sealed under AUTH_SECRET (so neither Redis nor its AOF holds a
 * value in clear), with a TTL, deleted by the worker when the build ends. A job payload holds
 * only the bundle's id. Without AUTH_SECRET secrets are refused (400 naming it).
 */
export class BuildSecretStore {
  private readonly box: SecretBox;

  constructor(
    private readonly redis: Redis,
    authSecret: string | null,
    private readonly ttlSeconds = BUILD_SECRETS_TTL_SECONDS,
  ) {
    this.box = new SecretBox(authSecret, 'stratum-build-secrets');
  }

  /**
   * Checks and seals `secrets` (id -> value) and `ssh` (ssh id -> private key files); returns
   * the bundle id.
   * @throws StratumError BAD_REQUEST without AUTH_SECRET, for a bad id, an unusable key or too many; SECRET_TOO_LARGE for a value over 500 KiB.
   */
  async put(
    secrets: ReadonlyMap<string, Buffer>,
    ssh: ReadonlyMap<string, readonly Buffer[]> = new Map(),
  ): Promise<string> {
    if (!this.box.available) {
      throw new StratumError(
        'BAD_REQUEST',
        'build secrets cannot be accepted: AUTH_SECRET is not set on this service (it keys their encryption at rest); ask the operator to set it',
      );
    }
    const count = secrets.size + ssh.size;
    if (count === 0 || count > MAX_BUILD_SECRETS) {
      throw new StratumError(
        'BAD_REQUEST',
        `a build takes 1 to ${MAX_BUILD_SECRETS} secrets and ssh ids, got ${count}`,
      );
    }
    checkSshKeys(ssh);
    const plain: Record<string, string> = {};
    for (const [id, value] of secrets) {
      if (!isSafeName(id)) {
        throw new StratumError(
          'BAD_REQUEST',
          `invalid secret id ${JSON.stringify(String(id).slice(0, 80))}: expected 1-128 of [A-Za-z0-9_.-], not starting with "." or "-"`,
        );
      }
      if (value.length > MAX_BUILD_SECRET_BYTES) {
        throw new StratumError(
          'SECRET_TOO_LARGE',
          `secret "${id}" is ${value.length} bytes, larger than the limit of ${MAX_BUILD_SECRET_BYTES} bytes`,
        );
      }
      plain[id] = value.toString('base64');
    }
    const sealed: SealedBundle = {
      v: 2,
      secrets: plain,
      ssh: Object.fromEntries([...ssh].map(([k, v]) => [k, v.map((b) => b.toString('base64'))])),
    };
    const id = randomUUID();
    await this.redis.set(key(id), this.box.seal(Buffer.from(JSON.stringify(sealed))), 'EX', this.ttlSeconds);
    return id;
  }

  async exists(id: string): Promise<boolean> {
    return (await this.redis.exists(key(id))) === 1;
  }

  /** The bundle's secrets and ssh keys, or null when it expired, was deleted or cannot be opened. */
  async get(id: string): Promise<BuildSecretBundle | null> {
    const raw = await this.redis.get(key(id));
    const plain = raw === null ? null : this.box.open(raw);
    if (plain === null) {
      return null;
    }
    const parsed = JSON.parse(plain.toString('utf8')) as SealedBundle | Record<string, string>;
    const bundle: SealedBundle =
      'v' in parsed && (parsed as SealedBundle).v === 2
        ? (parsed as SealedBundle)
        : { v: 2, secrets: parsed as Record<string, string>, ssh: {} };
    return {
      secrets: new Map(Object.entries(bundle.secrets).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
      ssh: new Map(Object.entries(bundle.ssh).map(([k, v]) => [k, v.map((b) => Buffer.from(b, 'base64'))])),
    };
  }

  async delete(id: string): Promise<void> {
    await this.redis.del(key(id));
  }
}
