import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';

/**
 * Docker token auth: scopes, the Bearer challenge, and the JWTs our token endpoint issues.
 * https://distribution.github.io/distribution/spec/auth/token/
 * https://distribution.github.io/distribution/spec/auth/scope/
 *
 * The JWT is HS256 (RFC 7515/7519) over node:crypto: the registry is both issuer and verifier,
 * so a shared secret is enough and a dependency for ~40 lines of HMAC is not worth it.
 */

/** One `type:name:actions` resource scope, e.g. `repository:team/app:pull,push`. */
export interface ResourceScope {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

/**
 * Parses a `scope` parameter (several scopes may be space separated). The name may contain a
 * port (`repository:host:5000/x:pull`), so the actions follow the *last* colon. Malformed parts
 * are skipped, as Distribution does.
 */
export function parseScopes(value: string | readonly string[] | undefined): ResourceScope[] {
  const parts = (typeof value === 'string' ? [value] : (value ?? [])).flatMap((v) => v.split(' '));
  const out: ResourceScope[] = [];
  for (const part of parts) {
    const first = part.indexOf(':');
    const last = part.lastIndexOf(':');
    if (first <= 0 || last === first) {
      continue;
    }
    const actions = part
      .slice(last + 1)
      .split(',')
      .map((a) => a.trim())
      .filter((a) => a !== '');
    out.push({ type: part.slice(0, first), name: part.slice(first + 1, last), actions });
  }
  return out;
}

/** `repository:name:pull,push` */
export function formatScope(scope: ResourceScope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`;
}

/** The `WWW-Authenticate` value answering an unauthenticated or under-scoped request. */
export function bearerChallenge(options: {
  realm: string;
  service: string;
  scopes?: readonly ResourceScope[];
  error?: 'invalid_token' | 'insufficient_scope';
}): string {
  const params = [`realm="${options.realm}"`, `service="${options.service}"`];
  if (options.scopes !== undefined && options.scopes.length > 0) {
    params.push(`scope="${options.scopes.map(formatScope).join(' ')}"`);
  }
  if (options.error !== undefined) {
    params.push(`error="${options.error}"`);
  }
  return `Bearer ${params.join(',')}`;
}

/** The claims of a registry token (the `access` claim as Distribution's token spec has it). */
export interface RegistryTokenClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly iat: number;
  readonly nbf: number;
  readonly exp: number;
  readonly jti: string;
  readonly access: ResourceScope[];
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
const HEADER = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
/** Tolerated clock difference between API replicas. */
const LEEWAY_SECONDS = 30;

/** Signs and verifies registry tokens with one HS256 key. */
export class RegistryTokenIssuer {
  constructor(
    private readonly secret: string,
    private readonly service: string,
    private readonly ttlSeconds: number,
    private readonly issuer = 'stratum',
  ) {
    if (secret.length < 32) {
      throw new Error('the token secret must be at least 32 characters');
    }
  }

  /** A signed token granting `access` to `subject` (`''` for anonymous). */
  issue(
    subject: string,
    access: ResourceScope[],
    now = Date.now(),
  ): { token: string; expiresIn: number; issuedAt: string } {
    const iat = Math.floor(now / 1000);
    const claims: RegistryTokenClaims = {
      iss: this.issuer,
      sub: subject,
      aud: this.service,
      iat,
      nbf: iat - LEEWAY_SECONDS,
      exp: iat + this.ttlSeconds,
      jti: randomUUID(),
      access,
    };
    const body = `${HEADER}.${b64url(JSON.stringify(claims))}`;
    return {
      token: `${body}.${this.sign(body)}`,
      expiresIn: this.ttlSeconds,
      issuedAt: new Date(iat * 1000).toISOString(),
    };
  }

  /** The claims of a valid, unexpired token of ours for our service; null otherwise. */
  verify(token: string, now = Date.now()): RegistryTokenClaims | null {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== HEADER) {
      return null;
    }
    const expected = Buffer.from(this.sign(`${parts[0]}.${parts[1]}`));
    const given = Buffer.from(parts[2] ?? '');
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      return null;
    }
    let claims: RegistryTokenClaims;
    try {
      claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as RegistryTokenClaims;
    } catch {
      return null;
    }
    const t = Math.floor(now / 1000);
    if (
      claims.iss !== this.issuer ||
      claims.aud !== this.service ||
      typeof claims.exp !== 'number' ||
      t >= claims.exp + LEEWAY_SECONDS ||
      t < claims.nbf ||
      !Array.isArray(claims.access)
    ) {
      return null;
    }
    return claims;
  }

  private sign(data: string): string {
    return createHmac('sha256', this.secret).update(data).digest('base64url');
  }
}

/** True when the granted scopes include every action of `wanted` on its resource. */
export function scopesAllow(granted: readonly ResourceScope[], wanted: ResourceScope): boolean {
  return wanted.actions.every((action) =>
    granted.some(
      (g) =>
        g.type === wanted.type &&
        g.name === wanted.name &&
        (g.actions.includes(action) || g.actions.includes('*')),
    ),
  );
}
