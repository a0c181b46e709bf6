import { Inject, Injectable } from '@nestjs/common';
import { Request } from 'express';
import { RepositoryAction, STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { StratumError } from '@stratum/contracts';
import { parseReference } from '@stratum/oci';
import { Principal } from './credential-verifier';
import { AuditAction, AuditLog } from './audit-log';
import { RegistryAccessPolicy } from './registry-access-policy';

const PRINCIPAL = Symbol('apiPrincipal');
type WithPrincipal = Request & { [PRINCIPAL]?: Principal };

/** Records who a REST request is (ApiTokenGuard, once its token checked out). */
export function setApiPrincipal(req: Request, principal: Principal): void {
  (req as WithPrincipal)[PRINCIPAL] = principal;
}

/**
 * The REST API's side of ACCESS_RULES: a request that writes into a repository (a build tagging
 * into it, an import, a commit, a tag, a delete) needs that action there, as the registry's
 * token flow does. With API_AUTH off the API has no identities (it then listens on loopback
 * only, or behind an authenticating proxy) and everything is allowed.
 */
@Injectable()
export class RepositoryAccess {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly policy: RegistryAccessPolicy,
    private readonly auditLog: AuditLog,
  ) {}

  /** Records what a REST request did in the audit log, as the request's principal. */
  audit(
    req: Request,
    action: AuditAction,
    fields: { repository?: string; target?: string; detail?: string } = {},
  ): Promise<void> {
    return this.auditLog.record({
      action,
      subject: this.subjectOf(req),
      client: req.ip ?? req.socket.remoteAddress ?? '',
      ...fields,
    });
  }

  /** Throws DENIED (403) unless the request's principal may do `action` on `repository`. */
  assert(req: Request, repository: string, action: RepositoryAction): void {
    if (!this.config.auth.api) {
      return;
    }
    const principal = (req as WithPrincipal)[PRINCIPAL];
    if (principal === undefined) {
      throw new StratumError('UNAUTHORIZED', 'an API token is required: Authorization: Bearer <token>');
    }
    if (!this.policy.actionsFor(principal, repository).includes(action)) {
      throw new StratumError(
        'DENIED',
        `${principal.subject} may not ${action} ${repository} (ACCESS_RULES)`,
        { repository, action },
      );
    }
  }

  /**
   * Who may manage robot accounts: anyone with API_AUTH off; else an API token with full
   * access to every repository (no ACCESS_RULES, or pull+push+delete on `*`), never a robot.
   * Returns the manager's subject (recorded as the robot's creator).
   */
  assertAdmin(req: Request): string {
    if (!this.config.auth.api) {
      return 'local';
    }
    const principal = (req as WithPrincipal)[PRINCIPAL];
    if (principal === undefined) {
      throw new StratumError('UNAUTHORIZED', 'an API token is required: Authorization: Bearer <token>');
    }
    if (principal.kind === 'robot' || this.policy.actionsFor(principal, '*').length < 3) {
      throw new StratumError(
        'DENIED',
        `${principal.subject} may not manage robot accounts (needs pull+push+delete on *)`,
      );
    }
    return principal.subject;
  }

  /** Who a REST request is, for the audit log: its token's subject, or `local` with API_AUTH off. */
  subjectOf(req: Request): string {
    return (req as WithPrincipal)[PRINCIPAL]?.subject ?? (this.config.auth.api ? 'anonymous' : 'local');
  }

  /** Whether the request's principal may pull `repository` (always with API_AUTH off). */
  mayPull(req: Request, repository: string): boolean {
    if (!this.config.auth.api) {
      return true;
    }
    const principal = (req as WithPrincipal)[PRINCIPAL];
    return this.policy.actionsFor(principal ?? null, repository).includes('pull');
  }

  /**
   * Which builds the request may see: under API_AUTH a build is visible only when the principal
   * may pull every repository of our registry that it tags into (tags naming another registry,
   * and untagged builds, check nothing): what reading one needs. Null with
   * API_AUTH off: every build, no filter to run.
   */
  buildFilter(req: Request): ((build: { readonly tags: readonly string[] }) => boolean) | null {
    if (!this.config.auth.api) {
      return null;
    }
    return (build) => repositoriesOf(build.tags).every((repository) => this.mayPull(req, repository));
  }

  /**
   * A build the request may not see is answered as if it did not exist (BUILD_UNKNOWN, 404),
   * with the message of a missing build: a 403 would tell a team the names of another's builds.
   */
  assertBuildVisible(req: Request, build: { readonly id: string; readonly tags: readonly string[] }): void {
    const visible = this.buildFilter(req);
    if (visible !== null && !visible(build)) {
      throw new StratumError('BUILD_UNKNOWN', `no build with id "${build.id}"`);
    }
  }

  /**
   * At project creation (and change): push on every repository of our registry its builds will
   * tag into — `repository` (what `{repo}` stands for) and each template's repository part — so
   * a webhook or schedule can never build into a repository its creator may not push to. A
   * template whose repository part has a placeholder other than `{repo}` cannot be checked
   * ahead and is refused (DENIED) while API_AUTH is on.
   */
  assertProjectTargets(
    req: Request,
    project: {
      readonly repository: string;
      readonly tags: readonly string[];
      readonly tagTemplates?: readonly string[] | undefined;
      readonly prTemplates?: readonly string[] | undefined;
      readonly pullRequests?: boolean | undefined;
    },
  ): void {
    if (!this.config.auth.api) {
      return;
    }
    const templates = [
      ...project.tags,
      ...(project.tagTemplates ?? ['{repo}:{tag}']),
      ...(project.pullRequests === false ? [] : (project.prTemplates ?? ['{repo}:pr-{pr}'])),
    ];
    const repositories = new Set<string>([project.repository]);
    for (const template of templates) {
      const filled = template.replace(/\{repo\}/g, project.repository);
      const at = filled.indexOf('@');
      let name = at >= 0 ? filled.slice(0, at) : filled;
      const colon = name.lastIndexOf(':');
      if (colon > name.lastIndexOf('/')) {
        name = name.slice(0, colon);
      }
      if (name.includes('{')) {
        throw new StratumError(
          'DENIED',
          `tag template "${template}" names its repository with a placeholder: with API_AUTH on, a project's repositories must be fixed so that push on them can be checked`,
        );
      }
      try {
        const ref = parseReference(`${name}:x`);
        if (ref.registry === null) {
          repositories.add(ref.repository);
        }
      } catch {
        // not a valid reference: the project's own validation names it
      }
    }
    for (const repository of repositories) {
      this.assert(req, repository, 'push');
    }
  }

  /** Push on the repository of each tag of our registry that a build or commit will write. */
  assertTags(req: Request, tags: readonly string[]): void {
    for (const tag of tags) {
      const ref = parseReference(tag);
      if (ref.registry === null) {
        this.assert(req, ref.repository, 'push');
      }
    }
  }
}

/** The repositories of our registry that `tags` name (those of other registries, and bad ones, left out). */
function repositoriesOf(tags: readonly string[]): string[] {
  const out: string[] = [];
  for (const tag of tags) {
    try {
      const ref = parseReference(tag);
      if (ref.registry === null) {
        out.push(ref.repository);
      }
    } catch {
      // not a reference: nothing of ours to check
    }
  }
  return out;
}
