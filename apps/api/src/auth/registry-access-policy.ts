import { AuthConfig } from '@stratum/config';
import { ResourceScope } from '@stratum/registry';
import { Principal } from './credential-verifier';

/** Actions a signed-in principal may take on a repository. */
const REPOSITORY_ACTIONS = ['pull', 'push', 'delete'];

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/**
 * Who may do what: anyone signed in (a REGISTRY_USERS user or an API token) may pull, push and
 * delete everywhere and read the catalog; anonymous requests may pull a repository that is
 * public: the first REPOSITORY_ACCESS pattern it matches decides, else ANONYMOUS_PULL.
 */
export class RegistryAccessPolicy {
  private readonly rules: { test: RegExp; access: 'public' | 'private' }[];

  constructor(private readonly auth: Pick<AuthConfig, 'anonymousPull' | 'repositoryAccess'>) {
    this.rules = auth.repositoryAccess.map((r) => ({ test: globToRegExp(r.pattern), access: r.access }));
  }

  isPublic(repository: string): boolean {
    const rule = this.rules.find((r) => r.test.test(repository));
    return rule === undefined ? this.auth.anonymousPull : rule.access === 'public';
  }

  /** The part of `requested` that `principal` (null: anonymous) is granted. */
  grant(principal: Principal | null, requested: readonly ResourceScope[]): ResourceScope[] {
    const out: ResourceScope[] = [];
    for (const scope of requested) {
      let actions: string[] = [];
      if (scope.type === 'repository') {
        actions =
          principal !== null
            ? scope.actions.filter((a) => REPOSITORY_ACTIONS.includes(a) || a === '*')
            : this.isPublic(scope.name)
              ? scope.actions.filter((a) => a === 'pull')
              : [];
      } else if (scope.type === 'registry' && scope.name === 'catalog' && principal !== null) {
        actions = scope.actions.filter((a) => a === '*');
      }
      if (actions.length > 0) {
        out.push({ type: scope.type, name: scope.name, actions });
      }
    }
    return out;
  }
}
