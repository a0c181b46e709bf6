import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { AccessRule, AuthConfig } from '@stratum/config';
import type { PasswordHasher } from './bcrypt-pool';

/** Who a set of credentials belongs to. */
export interface Principal {
  /** The user name, `token:<name>` for an API token, `robot:<name>` for a robot account. */
  readonly subject: string;
  readonly kind: 'user' | 'token' | 'robot';
  /** A robot's own repository rules (they replace ACCESS_RULES for it); none known: no access. */
  readonly rules?: readonly AccessRule[];
}

/** Robot tokens (the {@link RobotStore}); optional so that tools and tests can do without Redis. */
export interface RobotVerifier {
  verify(token: string, username?: string): Promise<Principal | null>;
}

/** Equal-time comparison of two secrets of any length (hashed first so lengths do not leak). */
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

const BCRYPT = /^\$2[abxy]?\$(\d{2})\$/;

/** bcryptjs on the calling thread: unit tests and tools; the API runs a {@link BcryptPool}. */
export const inlineBcrypt: PasswordHasher = {
  compare: (password, hash) => bcrypt.compare(password, hash),
  hash: (password, cost) => bcrypt.hash(password, cost),
  close: () => Promise.resolve(),
};

/**
 * Checks user names and passwords from REGISTRY_USERS (plain, or bcrypt as `htpasswd -B` writes
 * it) and API tokens from API_TOKENS (any user name, the token as password; or as a Bearer
 * token on the REST API).
 *
 * Every password check costs the same whoever asks: when any user has a bcrypt hash, an unknown
 * user name or a plain-password user is compared against a dummy hash of the highest cost
 * configured, so that the answer's timing does not tell which names exist (it was 2.8 ms for an
 * unknown name, 83 ms for a known one).
 */
export class CredentialVerifier {
  /** A hash of a random password at the highest configured cost; null when no user has one. */
  private readonly dummy: Promise<string> | null;

  constructor(
    private readonly auth: Pick<AuthConfig, 'users' | 'apiTokens'>,
    private readonly hasher: PasswordHasher = inlineBcrypt,
    private readonly robots: RobotVerifier | null = null,
  ) {
    const costs = auth.users.flatMap((u) => {
      const m = BCRYPT.exec(u.password);
      return m === null ? [] : [Number(m[1])];
    });
    this.dummy =
      costs.length === 0 ? null : hasher.hash(randomBytes(18).toString('base64'), Math.max(...costs));
    // Not awaited here; a failure surfaces on the first login that needs it.
    this.dummy?.catch(() => undefined);
  }

  async verifyPassword(username: string, password: string): Promise<Principal | null> {
    if (username.startsWith('robot+')) {
      return this.robots === null ? null : this.robots.verify(password, username);
    }
    const user = this.auth.users.find((u) => u.username === username);
    let ok: boolean;
    if (user !== undefined && BCRYPT.test(user.password)) {
      ok = await this.hasher.compare(password, user.password);
    } else {
      if (this.dummy !== null) {
        await this.hasher.compare(password, await this.dummy);
      }
      ok = user !== undefined && secretEquals(password, user.password);
    }
    if (ok) {
      return { subject: username, kind: 'user' };
    }
    return this.verifyToken(password);
  }

  verifyToken(token: string): Principal | null {
    const found = this.auth.apiTokens.find((t) => secretEquals(token, t.token));
    return found === undefined ? null : { subject: `token:${found.name}`, kind: 'token' };
  }

  /** The principal of an `Authorization: Basic …` header; null when absent or wrong. */
  async verifyBasic(header: string | undefined): Promise<Principal | null> {
    const creds = parseBasic(header);
    return creds === null ? null : this.verifyPassword(creds.username, creds.password);
  }
}

/** `Basic base64(user:password)` -> parts; null for anything else. */
export function parseBasic(header: string | undefined): { username: string; password: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (m === null) {
    return null;
  }
  const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return i < 0 ? null : { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/** The token of an `Authorization: Bearer …` header, or null. */
export function parseBearer(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m === null ? null : (m[1] ?? null);
}
