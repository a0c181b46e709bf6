import { CanActivate, ExecutionContext, Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import { Request } from 'express';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { CredentialVerifier, parseBearer } from './credential-verifier';
import { setApiPrincipal } from './repository-access';
import { RobotStore } from './robot-store';

/**
 * API tokens on the REST API (API_AUTH=true): every `/api/…` request needs
 * `Authorization: Bearer <token>` with a token of API_TOKENS. Off by default; /v2/ has its own
 * auth (TokenRegistryAuthorizer), health and docs stay open.
 */
@Injectable()
export class ApiTokenGuard implements CanActivate {
  private readonly verifier: CredentialVerifier;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly robots: RobotStore,
  ) {
    this.verifier = new CredentialVerifier(config.auth);
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (!this.config.auth.api || context.getType() !== 'http') {
      return true;
    }
    const req = context.switchToHttp().getRequest<Request>();
    // Express matches routes case-insensitively: so must this check (`/API/v1/...` is /api).
    if (!req.path.toLowerCase().startsWith('/api/')) {
      return true;
    }
    const token = parseBearer(req.headers.authorization);
    const principal =
      token === null ? null : (this.verifier.verifyToken(token) ?? (await this.robots.verify(token)));
    if (token === null) {
      throw new UnauthorizedException('an API token is required: Authorization: Bearer <token>');
    }
    if (principal === null) {
      // Said apart from a missing token, so a sign-in (the dashboard's, the CLI's) can tell a typo.
      throw new UnauthorizedException(
        'the API token was not accepted: it is neither a token of API_TOKENS nor a live robot token',
      );
    }
    setApiPrincipal(req, principal);
    return true;
  }
}
