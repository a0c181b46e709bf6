import type { BuildState } from './builds';

// Projects: a git repository whose pushes (webhooks) or schedule build an image.

/** Forges whose webhooks `POST /hooks/<forge>` receives. */
export const GitForge = { GitHub: 'github', GitLab: 'gitlab', Gitea: 'gitea' } as const;
export type GitForge = (typeof GitForge)[keyof typeof GitForge];

/** A project as `GET /api/v1/projects/:name` answers it (secrets are never shown). */
export interface ProjectView {
  readonly name: string;
  /** Clone URL (https, ssh, git; file only when GIT_ALLOW_FILE_URLS). */
  readonly repoUrl: string;
  /** The forge hosting it (commit links, commit statuses); null: not said (links guessed from the host). */
  readonly forge?: GitForge | null;
  /** The forge's API base for commit statuses; null: derived from `repoUrl` (api.github.com, `/api/v4`, `/api/v1`). */
  readonly forgeApiUrl?: string | null;
  /** `owner/repo` (GitLab: project path or id) on the forge; null: taken from `repoUrl`. */
  readonly forgeRepository?: string | null;
  /** True when a forge token is set: builds then report commit statuses (`stratum/<name>`). */
  readonly hasStatusToken?: boolean;
  /** Branches whose pushes build; `*` at the end of one matches any suffix. */
  readonly branches: string[];
  /** The build context inside the repository (`.`: its root). */
  readonly context: string;
  /** The Dockerfile, relative to the context. */
  readonly dockerfile: string;
  /** Image tags of branch builds; `{repo}`, `{branch}`, `{sha}`, `{shortsha}`, `{sha:N}` are filled in per build. */
  readonly tags: string[];
  /** Tag pushes that build (`*` at the end matches any suffix); empty: none. Default `['*']`. */
  readonly tagPatterns?: string[];
  /** Image tags of tag builds (`{tag}`, `{sha:7}`…). Default `['{repo}:{tag}']`. */
  readonly tagTemplates?: string[];
  /** Build pull/merge requests' head commits. Default true. */
  readonly pullRequests?: boolean;
  /** Image tags of pull/merge request builds (`{pr}`, `{branch}`: the head branch…). Default `['{repo}:pr-{pr}']`. */
  readonly prTemplates?: string[];
  /** Receives this project's build events (HMAC-signed with its notifySecret); null: none. */
  readonly notifyUrl?: string | null;
  /** A newer push to a branch cancels the project's queued or running builds of it. Default true. */
  readonly autoCancel?: boolean;
  /** Repository of our registry `{repo}` stands for (default: the project's name). */
  readonly repository: string;
  readonly buildArgs: Record<string, string>;
  readonly target: string | null;
  /** Cron expression of scheduled rebuilds of `scheduleBranch`, or null. */
  readonly schedule: string | null;
  readonly scheduleBranch: string | null;
  /** True when a webhook secret is set (required for webhooks to be accepted). */
  readonly hasSecret: boolean;
  /**
   * OpenSSH known_hosts lines for an `ssh://` or `git@host:` repository: its fetches check the
   * server's host key strictly against them (and are refused when the project holds a deploy key
   * but none are set). `ssh-keyscan HOST` prints them; verify them out of band. Null: not set.
   */
  readonly sshKnownHosts?: string | null;
  /** True when fetch credentials are set. */
  readonly hasCredentials: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** The last build a push or the schedule started, or the reason it could not. */
  readonly lastTrigger: ProjectTrigger | null;
}

/** One build started from a project (or its failure to start). */
export interface ProjectTrigger {
  readonly source: 'webhook' | 'schedule' | 'manual';
  readonly branch: string;
  readonly sha: string;
  readonly buildId: string | null;
  readonly tags: string[];
  readonly error: string | null;
  readonly at: string;
}

/** Answer of a webhook receiver. */
export type WebhookResult =
  | { readonly status: 'accepted'; readonly builds: ProjectTrigger[] }
  | { readonly status: 'ignored'; readonly reason: string };

/** A ref of a project with its latest build (`GET /api/v1/projects/:name/refs`). */
export interface ProjectRefState {
  /** `refs/heads/main`, `refs/tags/v1.2.3`, `refs/pull/7/head`. */
  readonly ref: string;
  readonly buildId: string;
  readonly state: BuildState;
  readonly sha: string | null;
  readonly commitUrl: string | null;
  readonly createdAt: string;
  readonly finishedAt: string | null;
}
