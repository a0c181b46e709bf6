import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Request } from 'express';
import { parseRegistryPath, RegistryAction, RegistryRoute, routeAction } from '@stratum/registry';

/** One repository and what a request does to it (the shape of a Docker token `scope`). */
export interface RegistryScope {
  /** null for the catalog. */
  readonly repository: string | null;
  readonly actions: RegistryAction[];
}

/** What the {@link RegistryAuthorizer} decides on. */
export interface RegistryAccessRequest {
  readonly route: RegistryRoute;
  readonly method: string;
  /** Every scope the request needs: a cross-repository mount also needs `pull` on `from`. */
  readonly scopes: RegistryScope[];
  readonly headers: Request['headers'];
  /** The client's address (password logins are rate limited per address). */
  readonly client?: string;
}

/** What an authorized request may do beyond the scopes it was checked for. */
export interface RegistryGrant {
  /** Whether the asker may pull from `repository` (a mount without `from` looks for one). */
  mayPull(repository: string): boolean;
  /** Who asks, for the audit log: a user, `token:…`, `robot:…`, or `anonymous`. */
  readonly subject: string;
}

/**
 * The authentication hook (auth/auth.module.ts picks the implementation): throw RegistryError
 * UNAUTHORIZED (401, with its `WWW-Authenticate` challenge in the error's headers) or DENIED (403). The base endpoint `/v2/` is
 * also passed, with no scopes, so a token-auth implementation can answer its 401 challenge there.
 */
export interface RegistryAuthorizer {
  authorize(request: RegistryAccessRequest): Promise<RegistryGrant>;
}

/** Injection token of the {@link RegistryAuthorizer}. */
export const REGISTRY_AUTHORIZER = Symbol('REGISTRY_AUTHORIZER');

/** REGISTRY_AUTH=none: every request is allowed. */
export class AllowAllRegistryAuthorizer implements RegistryAuthorizer {
  async authorize(): Promise<RegistryGrant> {
    // An open registry, by configuration.
    return { mayPull: () => true, subject: 'anonymous' };
  }
}

const ROUTE = Symbol('registryRoute');
const GRANT = Symbol('registryGrant');
type RoutedRequest = Request & { [ROUTE]?: RegistryRoute | null; [GRANT]?: RegistryGrant };

/** What the guard's authorizer granted this request; nothing readable when it did not run. */
export function registryGrantOf(req: Request): RegistryGrant {
  return (req as RoutedRequest)[GRANT] ?? { mayPull: () => false, subject: 'anonymous' };
}

/** The endpoint of a /v2/ request (parsed once per request); null when there is none. */
export function registryRouteOf(req: Request): RegistryRoute | null {
  const r = req as RoutedRequest;
  if (r[ROUTE] === undefined) {
    const path = (req.originalUrl.split('?')[0] ?? '').replace(/^\/v2\/?/, '');
    r[ROUTE] = parseRegistryPath(path);
  }
  return r[ROUTE];
}

/** Asks the {@link RegistryAuthorizer} before any registry handler runs. */
@Injectable()
export class RegistryAccessGuard implements CanActivate {
  constructor(@Inject(REGISTRY_AUTHORIZER) private readonly authorizer: RegistryAuthorizer) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<Request>();
    const route = registryRouteOf(req);
    if (route === null || route.kind === 'token') {
      return true; // the controller answers 404; the token endpoint checks its own credentials
    }
    const action = routeAction(route, req.method);
    const scopes: RegistryScope[] = [];
    if (action !== null) {
      const repository = 'name' in route ? route.name : null;
      scopes.push({ repository, actions: action === 'push' ? ['pull', 'push'] : [action] });
      const from = req.query.from;
      if (route.kind === 'uploads' && typeof from === 'string' && from !== '') {
        scopes.push({ repository: from, actions: ['pull'] });
      }
    }
    (req as RoutedRequest)[GRANT] = await this.authorizer.authorize({
      route,
      method: req.method,
      scopes,
      headers: req.headers,
      client: req.ip ?? req.socket.remoteAddress,
    });
    return true;
  }
}
