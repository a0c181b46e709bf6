import { AuthConfig, RepositoryAction } from '@stratum/config';
import { ResourceScope } from '@stratum/registry';
import { Principal } from './credential-verifier';

/** Actions a principal may take on a repository. */
const REPOSITORY_ACTIONS: readonly RepositoryAction[] = ['pull', 'push', 'delete'];

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/**
 * Who may do what. Anonymous requests may pull a repository that is public: the first
 * REPOSITORY_ACCESS pattern it matches decides, else ANONYMOUS_PULL. A signed-in principal (a
 * REGISTRY_USERS user or an API token, `token:<name>`) may pull, push and delete everywhere and
 * read the catalog while ACCESS_RULES is empty; once rules exist it may do on a repository only
 * what the rules naming it (or `*`) and matching the repository grant, plus pull where the
 * repository is public, and read the catalog only with a pull rule on `*`.
 */
export class RegistryAccessPolicy {
  private readonly rules: { test: RegExp; access: 'public' | 'private' }[];
  private readonly accessRules: { subject: string; test: RegExp; actions: readonly RepositoryAction[] }[];

  constructor(
    private readonly auth: Pick<AuthConfig, 'anonymousPull' | 'repositoryAccess'> &
      Partial<Pick<AuthConfig, 'accessRules'>>,
  ) {
    this.rules = auth.repositoryAccess.map((r) => ({ test: globToRegExp(r.pattern), access: r.access }));
    this.accessRules = (auth.accessRules ?? []).map((r) => ({
      subject: r.subject,
      test: globToRegExp(r.pattern),
      actions: r.actions,
    }));
  }

  isPublic(repository: string): boolean {
    const rule = this.rules.find((r) => r.test.test(repository));
    return rule === undefined ? this.auth.anonymousPull : rule.access === 'public';
  }

  /** What `principal` (null: anonymous) may do on `repository`. */
  actionsFor(principal: Principal | null, repository: string): RepositoryAction[] {
    const out = new Set<RepositoryAction>();
    if (this.isPublic(repository)) {
      out.add('pull');
    }
    if (principal === null) {
      return [...out];
    }
    if (principal.kind === 'robot') {
      // Only its own rules; a robot known by name alone (a bearer token's subject) gets none.
      for (const rule of principal.rules ?? []) {
        if (globToRegExp(rule.pattern).test(repository)) {
          rule.actions.forEach((a) => out.add(a));
        }
      }
      return REPOSITORY_ACTIONS.filter((a) => out.has(a));
    }
    if (this.accessRules.length === 0) {
      return [...REPOSITORY_ACTIONS];
    }
    for (const rule of this.accessRules) {
      if ((rule.subject === principal.subject || rule.subject === '*') && rule.test.test(repository)) {
        rule.actions.forEach((a) => out.add(a));
      }
    }
    return REPOSITORY_ACTIONS.filter((a) => out.has(a));
  }

  /** The part of `requested` that `principal` (null: anonymous) is granted. */
  grant(principal: Principal | null, requested: readonly ResourceScope[]): ResourceScope[] {
    const out: ResourceScope[] = [];
    for (const scope of requested) {
      let actions: string[] = [];
      if (scope.type === 'repository') {
        const allowed: string[] = this.actionsFor(principal, scope.name);
        actions = scope.actions.filter(
          (a) => allowed.includes(a) || (a === '*' && allowed.length === REPOSITORY_ACTIONS.length),
        );
      } else if (
        scope.type === 'registry' &&
        scope.name === 'catalog' &&
        principal !== null &&
        principal.kind !== 'robot'
      ) {
        const catalog = this.accessRules.length === 0 || this.actionsFor(principal, '*').includes('pull');
        actions = catalog ? scope.actions.filter((a) => a === '*') : [];
      }
      if (actions.length > 0) {
        out.push({ type: scope.type, name: scope.name, actions });
      }
    }
    return out;
  }
}
