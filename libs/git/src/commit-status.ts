import { BuildState, GitForge } from '@stratum/contracts';
import { repositoryWebUrl } from './forge-links';

/** The state a forge shows for a commit, in Stratum's words (each forge has its own names). */
export type CommitState = 'pending' | 'running' | 'success' | 'failure' | 'error';

/**
 * queued: pending; running: `running` on GitLab (its status API has that state), pending on
 * GitHub and Gitea (theirs do not); succeeded: success; failed: failure; cancelled: error.
 */
export function commitStateOf(state: BuildState, forge?: GitForge): CommitState {
  switch (state) {
    case BuildState.Queued:
      return 'pending';
    case BuildState.Running:
      return forge === GitForge.GitLab ? 'running' : 'pending';
    case BuildState.Succeeded:
      return 'success';
    case BuildState.Failed:
      return 'failure';
    case BuildState.Cancelled:
      return 'error';
  }
}

export interface CommitStatus {
  readonly state: CommitState;
  /** `stratum/<project>`: one check per project on the commit. */
  readonly context: string;
  readonly targetUrl: string;
  readonly description: string;
  /** GitLab's `ref` (the branch or tag); others ignore it. */
  readonly ref: string | null;
}

/** Where a project's forge API is and which repository there. */
export interface ForgeTarget {
  readonly forge: GitForge;
  /** API base: `https://api.github.com`, `https://host/api/v4` (GitLab), `https://host/api/v1` (Gitea). */
  readonly apiUrl: string;
  /** `owner/repo` (GitLab: the project's full path, or its numeric id). */
  readonly repository: string;
}

/** An HTTP request, ready for fetch. */
export interface ForgeRequest {
  readonly method: 'POST';
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * The forge's API base and repository from the project's clone URL, when it does not name them:
 * github.com → api.github.com; another GitHub host (Enterprise) → `/api/v3`; GitLab `/api/v4`;
 * Gitea `/api/v1`. Null when the URL has no web host (file://).
 */
export function defaultForgeTarget(
  forge: GitForge,
  repoUrl: string,
): { apiUrl: string; repository: string } | null {
  const web = repositoryWebUrl(repoUrl);
  if (web === null) {
    return null;
  }
  const u = new URL(web);
  const repository = u.pathname.replace(/^\/+/, '');
  switch (forge) {
    case GitForge.GitHub:
      return {
        apiUrl: u.hostname === 'github.com' ? 'https://api.github.com' : `${u.origin}/api/v3`,
        repository,
      };
    case GitForge.GitLab:
      return { apiUrl: `${u.origin}/api/v4`, repository };
    case GitForge.Gitea:
      return { apiUrl: `${u.origin}/api/v1`, repository };
  }
}

/** GitLab's status names: https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit */
const GITLAB_STATE: Readonly<Record<CommitState, string>> = {
  pending: 'pending',
  running: 'running',
  success: 'success',
  failure: 'failed',
  error: 'canceled',
};

/**
 * The status request of each forge's documented API:
 * - GitHub `POST /repos/{owner}/{repo}/statuses/{sha}` {state, target_url, description, context},
 *   `Authorization: Bearer` (https://docs.github.com/en/rest/commits/statuses#create-a-commit-status)
 * - GitLab `POST /projects/:id/statuses/:sha` {state, ref, name, target_url, description},
 *   `PRIVATE-TOKEN` (https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit)
 * - Gitea `POST /repos/{owner}/{repo}/statuses/{sha}` {state, target_url, description, context},
 *   `Authorization: token` (https://gitea.com/api/swagger#/repository/repoCreateStatus)
 * Descriptions are cut to 140 characters (GitHub's limit).
 */
export function commitStatusRequest(
  target: ForgeTarget,
  sha: string,
  status: CommitStatus,
  token: string,
): ForgeRequest {
  const base = target.apiUrl.replace(/\/+$/, '');
  // GitHub and Gitea have no `running`: a running build is pending there.
  const state = status.state === 'running' ? 'pending' : status.state;
  const description = status.description.slice(0, 140);
  const json = { 'Content-Type': 'application/json', Accept: 'application/json', 'User-Agent': 'stratum' };
  switch (target.forge) {
    case GitForge.GitHub:
      return {
        method: 'POST',
        url: `${base}/repos/${ownerRepo(target.repository)}/statuses/${sha}`,
        headers: {
          ...json,
          Accept: 'application/vnd.github+json',
          'X-GitHub-Api-Version': '2022-11-28',
          Authorization: `Bearer ${token}`,
        },
        body: JSON.stringify({
          state,
          target_url: status.targetUrl,
          description,
          context: status.context,
        }),
      };
    case GitForge.Gitea:
      return {
        method: 'POST',
        url: `${base}/repos/${ownerRepo(target.repository)}/statuses/${sha}`,
        headers: { ...json, Authorization: `token ${token}` },
        body: JSON.stringify({
          state,
          target_url: status.targetUrl,
          description,
          context: status.context,
        }),
      };
    case GitForge.GitLab:
      return {
        method: 'POST',
        // A project path is one URL-encoded id (`group%2Fsub%2Fapp`); a number is the id itself.
        url: `${base}/projects/${encodeURIComponent(target.repository)}/statuses/${sha}`,
        headers: { ...json, 'PRIVATE-TOKEN': token },
        body: JSON.stringify({
          state: GITLAB_STATE[status.state],
          ...(status.ref !== null ? { ref: status.ref } : {}),
          name: status.context,
          target_url: status.targetUrl,
          description,
        }),
      };
  }
}

/** `owner/repo` with each part URL-encoded (they cannot hold a slash). */
function ownerRepo(repository: string): string {
  return repository
    .split('/')
    .map((p) => encodeURIComponent(p))
    .join('/');
}
