import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { AuthConfig } from '@stratum/config';

/** Who a set of credentials belongs to. */
export interface Principal {
  /** The user name, or `token:<name>` for an API token. */
  readonly subject: string;
  readonly kind: 'user' | 'token';
}

/** Equal-time comparison of two secrets of any length (hashed first so lengths do not leak). */
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

const BCRYPT = /^\$2[abxy]?\$\d{2}\$/;

/**
 * Checks user names and passwords from REGISTRY_USERS (plain, or bcrypt as `htpasswd -B` writes
 * it) and API tokens from API_TOKENS (any user name, the token as password; or as a Bearer
 * token on the REST API).
 */
export class CredentialVerifier {
  constructor(private readonly auth: Pick<AuthConfig, 'users' | 'apiTokens'>) {}

  async verifyPassword(username: string, password: string): Promise<Principal | null> {
    const user = this.auth.users.find((u) => u.username === username);
    if (user !== undefined) {
      const ok = BCRYPT.test(user.password)
        ? await bcrypt.compare(password, user.password)
        : secretEquals(password, user.password);
      if (ok) {
        return { subject: username, kind: 'user' };
      }
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
