import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AccessRule, RepositoryAction } from '@stratum/config';
import { StratumError } from '@stratum/contracts';
import { Principal } from './credential-verifier';

/** A robot account as listed: never its token. */
export interface RobotAccount {
  readonly name: string;
  /** The registry login name (`docker login -u robot+<name>`). */
  readonly username: string;
  readonly rules: readonly { pattern: string; actions: readonly RepositoryAction[] }[];
  readonly createdAt: string;
  readonly createdBy: string;
  readonly expiresAt: string;
}

/** A robot account just made: the only time its token is shown. */
export interface CreatedRobot extends RobotAccount {
  readonly token: string;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const PREFIX = 'stratum-robot.';
/** The longest life a robot token may be given. */
export const MAX_ROBOT_SECONDS = 366 * 86_400;
const MAX_RULES = 64;

const key = (name: string): string => `stratum:robot:${name}`;
const INDEX = 'stratum:robots';

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Robot accounts: a name, repository rules (as ACCESS_RULES, for this account only) and an
 * expiry, kept in Redis with only the SHA-256 of the token (a 32-byte random secret: a fast hash
 * is enough, as for GitHub's tokens), expiring with the key itself; revoking deletes the key.
 * The token names its robot (`stratum-robot.<name>.<secret>`) so a check is one lookup. It works
 * as the password of `robot+<name>` on the registry and as a Bearer token on the REST API.
 */
export class RobotStore {
  constructor(
    private readonly redis: Redis,
    private readonly now: () => number = Date.now,
  ) {}

  async create(input: {
    name: string;
    expiresInSeconds: number;
    rules: readonly { pattern: string; actions: readonly RepositoryAction[] }[];
    createdBy: string;
  }): Promise<CreatedRobot> {
    if (!NAME.test(input.name)) {
      throw new StratumError(
        'BAD_REQUEST',
        `robot name ${JSON.stringify(input.name)} must match ${NAME.source}`,
      );
    }
    if (
      !Number.isSafeInteger(input.expiresInSeconds) ||
      input.expiresInSeconds < 1 ||
      input.expiresInSeconds > MAX_ROBOT_SECONDS
    ) {
      throw new StratumError(
        'BAD_REQUEST',
        `expiresInSeconds must be 1..${MAX_ROBOT_SECONDS} (a robot always expires)`,
      );
    }
    if (input.rules.length === 0 || input.rules.length > MAX_RULES) {
      throw new StratumError('BAD_REQUEST', `a robot needs 1..${MAX_RULES} rules`);
    }
    const token = `${PREFIX}${input.name}.${randomBytes(32).toString('base64url')}`;
    const createdAt = new Date(this.now()).toISOString();
    const expiresAtMs = this.now() + input.expiresInSeconds * 1000;
    const expiresAt = new Date(expiresAtMs).toISOString();
    const fields = {
      hash: hashToken(token).toString('hex'),
      rules: JSON.stringify(input.rules),
      createdAt,
      createdBy: input.createdBy,
      expiresAt,
    };
    // HSETNX on one field decides who made it; the rest follows in one MULTI.
    const k = key(input.name);
    if ((await this.redis.hsetnx(k, 'hash', fields.hash)) === 0) {
      throw new StratumError('ROBOT_EXISTS', `robot ${input.name} exists: revoke it first`);
    }
    await this.redis.multi().hset(k, fields).pexpireat(k, expiresAtMs).sadd(INDEX, input.name).exec();
    return { ...this.account(input.name, fields), token };
  }

  async list(): Promise<RobotAccount[]> {
    const out: RobotAccount[] = [];
    for (const name of (await this.redis.smembers(INDEX)).sort()) {
      const fields = await this.redis.hgetall(key(name));
      if (fields.hash === undefined) {
        await this.redis.srem(INDEX, name); // expired: Redis dropped the key
        continue;
      }
      out.push(this.account(name, fields));
    }
    return out;
  }

  /** True when the robot existed. Its token stops working at once. */
  async revoke(name: string): Promise<boolean> {
    const [[, removed]] = (await this.redis.multi().del(key(name)).srem(INDEX, name).exec()) as [
      [unknown, number],
    ];
    return removed === 1;
  }

  /** The principal a robot token belongs to, or null (unknown, revoked, expired or wrong). */
  async verify(token: string, username?: string): Promise<Principal | null> {
    if (!token.startsWith(PREFIX)) {
      return null;
    }
    const dot = token.indexOf('.', PREFIX.length);
    const name = dot < 0 ? '' : token.slice(PREFIX.length, dot);
    if (!NAME.test(name) || (username !== undefined && username !== `robot+${name}`)) {
      return null;
    }
    const fields = await this.redis.hgetall(key(name));
    if (
      fields.hash === undefined ||
      fields.expiresAt === undefined ||
      Date.parse(fields.expiresAt) <= this.now()
    ) {
      return null;
    }
    const want = Buffer.from(fields.hash, 'hex');
    const got = hashToken(token);
    if (want.length !== got.length || !timingSafeEqual(want, got)) {
      return null;
    }
    const rules = this.account(name, fields).rules.map((r): AccessRule => ({
      subject: `robot:${name}`,
      pattern: r.pattern,
      actions: r.actions,
    }));
    return { subject: `robot:${name}`, kind: 'robot', rules };
  }

  private account(name: string, f: Record<string, string>): RobotAccount {
    return {
      name,
      username: `robot+${name}`,
      rules: JSON.parse(f.rules ?? '[]') as RobotAccount['rules'],
      createdAt: f.createdAt ?? '',
      createdBy: f.createdBy ?? '',
      expiresAt: f.expiresAt ?? '',
    };
  }
}
