import { AuthConfig } from '@stratum/config';
import { parseScopes, RegistryError, RegistryTokenIssuer, ResourceScope } from '@stratum/registry';
import { parseBasic } from './credential-verifier';
import { PasswordLogin } from './password-login';
import { RegistryAccessPolicy } from './registry-access-policy';

/** The JSON answer of the token endpoint (both field names: Docker reads `token`, OAuth2 clients `access_token`). */
export interface TokenResponse {
  readonly token: string;
  readonly access_token: string;
  readonly expires_in: number;
  readonly issued_at: string;
}

/**
 * `GET /v2/token?service=&scope=…`: the Docker token endpoint.
 * https://distribution.github.io/distribution/spec/auth/token/#requesting-a-token
 * With Basic credentials the token carries what the principal may do of what was asked; without,
 * what anonymous requests may (pull of public repositories). Wrong credentials are a 401, which
 * is how `docker login` learns a password is wrong.
 */
export class RegistryTokenService {
  constructor(
    private readonly auth: AuthConfig,
    private readonly issuer: RegistryTokenIssuer,
    private readonly logins: PasswordLogin,
    private readonly policy: RegistryAccessPolicy,
  ) {}

  async issue(
    authorization: string | undefined,
    query: { service?: unknown; scope?: unknown },
    /** The client's address: logins are rate limited per address too. */
    client?: string,
  ): Promise<TokenResponse> {
    if (typeof query.service === 'string' && query.service !== '' && query.service !== this.auth.service) {
      throw new RegistryError('DENIED', `unknown service ${JSON.stringify(query.service)}`, undefined, {
        status: 400,
      });
    }
    let subject = '';
    let principal = null;
    if (authorization !== undefined && authorization !== '') {
      const creds = parseBasic(authorization);
      principal = creds === null ? null : await this.logins.login(creds.username, creds.password, client);
      if (principal === null) {
        throw new RegistryError('UNAUTHORIZED', 'invalid username or password', undefined, {
          headers: { 'WWW-Authenticate': `Basic realm="${this.auth.service}"` },
        });
      }
      subject = principal.subject;
    }
    const scope = query.scope;
    const requested: ResourceScope[] = parseScopes(
      typeof scope === 'string'
        ? scope
        : Array.isArray(scope)
          ? scope.filter((s) => typeof s === 'string')
          : [],
    );
    const issued = this.issuer.issue(subject, this.policy.grant(principal, requested));
    return {
      token: issued.token,
      access_token: issued.token,
      expires_in: issued.expiresIn,
      issued_at: issued.issuedAt,
    };
  }
}
