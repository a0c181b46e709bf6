import { AuthConfig } from '@stratum/config';
import {
  bearerChallenge,
  RegistryError,
  RegistryTokenIssuer,
  ResourceScope,
  scopesAllow,
} from '@stratum/registry';
import { RegistryAccessRequest, RegistryAuthorizer, RegistryGrant } from '../registry/registry-access.guard';
import { parseBasic, parseBearer, Principal } from './credential-verifier';
import { PasswordLogin } from './password-login';
import { RegistryAccessPolicy } from './registry-access-policy';

/**
 * Docker token auth on /v2/ (REGISTRY_AUTH=token). A request passes with a token of ours whose
 * `access` covers every scope it needs, with Basic credentials (checked directly, for curl and
 * clients that send them up front), or anonymously for a pull of a public repository. Otherwise
 * it is a 401 whose `WWW-Authenticate` challenge names the token realm and the scope to ask for.
 * `/v2/` itself always wants a signed-in or anonymous token: that 401 is how clients discover
 * the realm (Distribution does the same).
 */
export class TokenRegistryAuthorizer implements RegistryAuthorizer {
  constructor(
    private readonly auth: AuthConfig,
    private readonly issuer: RegistryTokenIssuer,
    private readonly logins: PasswordLogin,
    private readonly policy: RegistryAccessPolicy,
    private readonly publicUrl: string | null,
  ) {}

  async authorize(request: RegistryAccessRequest): Promise<RegistryGrant> {
    const header = request.headers.authorization;
    const wanted: ResourceScope[] = request.scopes.map((s) =>
      s.repository === null
        ? { type: 'registry', name: 'catalog', actions: ['*'] }
        : { type: 'repository', name: s.repository, actions: s.actions },
    );
    let granted: ResourceScope[] | null = null;
    let presented = false;
    // Who asks (null: anonymous), for what the request's scopes do not say (mayPull).
    let principal: Principal | null = null;
    const bearer = parseBearer(header);
    const basic = bearer === null ? parseBasic(header) : null;
    if (bearer !== null) {
      presented = true;
      const claims = this.issuer.verify(bearer);
      granted = claims?.access ?? null;
      if (claims !== null && claims.sub !== '') {
        principal = {
          subject: claims.sub,
          kind: claims.sub.startsWith('token:')
            ? 'token'
            : claims.sub.startsWith('robot:')
              ? 'robot'
              : 'user',
        };
      }
    } else if (basic !== null) {
      presented = true;
      principal = await this.logins.login(basic.username, basic.password, request.client);
      granted = principal === null ? null : this.policy.grant(principal, wanted);
    }
    const grant: RegistryGrant = {
      subject: principal?.subject ?? 'anonymous',
      mayPull: (repository) =>
        this.policy.grant(principal, [{ type: 'repository', name: repository, actions: ['pull'] }]).length >
        0,
    };
    if (request.route.kind === 'base') {
      if (granted !== null) {
        return grant;
      }
      throw this.challenge(request, [], presented ? 'invalid_token' : undefined);
    }
    const have = granted ?? (presented ? [] : this.policy.grant(null, wanted));
    if (wanted.every((w) => scopesAllow(have, w))) {
      return grant;
    }
    if (principal !== null && granted !== null) {
      // Signed in, and no token would do: the principal's ACCESS_RULES do not allow it. A 403
      // with the OCI error body; a token that merely lacks a scope it could get stays a 401.
      const allowed = this.policy.grant(principal, wanted);
      const missing = wanted.filter((w) => !scopesAllow(allowed, w));
      if (missing.length > 0) {
        throw new RegistryError(
          'DENIED',
          `requested access to the resource is denied: ${principal.subject} may not ${missing
            .map((m) => `${m.actions.join(',')} ${m.type === 'registry' ? 'the catalog' : m.name}`)
            .join('; ')}`,
          { scopes: missing },
        );
      }
    }
    throw this.challenge(
      request,
      wanted,
      granted === null && presented ? 'invalid_token' : presented ? 'insufficient_scope' : undefined,
    );
  }

  private challenge(
    request: RegistryAccessRequest,
    scopes: ResourceScope[],
    error?: 'invalid_token' | 'insufficient_scope',
  ): RegistryError {
    const realm = `${this.baseUrl(request)}/v2/token`;
    return new RegistryError(
      'UNAUTHORIZED',
      'authentication required',
      scopes.length > 0 ? { scopes } : undefined,
      {
        headers: {
          'WWW-Authenticate': bearerChallenge({
            realm,
            service: this.auth.service,
            scopes,
            ...(error !== undefined ? { error } : {}),
          }),
        },
      },
    );
  }

  private baseUrl(request: RegistryAccessRequest): string {
    if (this.publicUrl !== null) {
      return this.publicUrl.replace(/\/+$/, '');
    }
    const proto = request.headers['x-forwarded-proto'];
    const scheme =
      typeof proto === 'string' && proto !== '' ? (proto.split(',')[0] ?? 'http').trim() : 'http';
    return `${scheme}://${request.headers.host ?? 'localhost'}`;
  }
}
