import { createHash, createHmac, Hash, Hmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { GitForge } from '@stratum/contracts';

/** Case-insensitive request headers as Node gives them (lower-case names). */
export type WebhookHeaders = Readonly<Record<string, string | string[] | undefined>>;

function header(headers: WebhookHeaders, name: string): string | null {
  const v = headers[name.toLowerCase()];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? null : s;
}

function equalConstantTime(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // timingSafeEqual needs equal lengths; comparing y with itself keeps the time independent of a.
  return x.length === y.length ? timingSafeEqual(x, y) : (timingSafeEqual(y, y), false);
}

function hmacHex(secret: string, body: Buffer): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

/** What authenticates a delivery, taken from its headers before the body is trusted. */
export interface WebhookCredentials {
  readonly forge: GitForge;
  /** Signature (GitHub, Gitea) or token (GitLab); null when the header is missing. */
  readonly proof: string | null;
  /** Delivery id, remembered to refuse replays; null when missing. */
  readonly deliveryId: string | null;
  /** The event name the forge sent (`push`, `ping`, `Push Hook`…). */
  readonly event: string | null;
}

/**
 * Reads the forge's headers:
 * - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Delivery`,
 *   `X-GitHub-Event` (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries)
 * - Gitea: `X-Gitea-Signature: <hex HMAC-SHA256>`, `X-Gitea-Delivery`, `X-Gitea-Event`
 *   (https://docs.gitea.com/usage/webhooks)
 * - GitLab: `X-Gitlab-Token: <the secret token>`, `X-Gitlab-Event-UUID`, `X-Gitlab-Event`
 *   (https://docs.gitlab.com/user/project/integrations/webhooks/)
 */
export function webhookCredentials(forge: GitForge, headers: WebhookHeaders): WebhookCredentials {
  switch (forge) {
    case GitForge.GitHub:
      return {
        forge,
        proof: header(headers, 'x-hub-signature-256'),
        deliveryId: header(headers, 'x-github-delivery'),
        event: header(headers, 'x-github-event'),
      };
    case GitForge.Gitea:
      return {
        forge,
        proof: header(headers, 'x-gitea-signature'),
        deliveryId: header(headers, 'x-gitea-delivery'),
        event: header(headers, 'x-gitea-event'),
      };
    case GitForge.GitLab:
      return {
        forge,
        proof: header(headers, 'x-gitlab-token'),
        deliveryId: header(headers, 'x-gitlab-event-uuid'),
        event: header(headers, 'x-gitlab-event'),
      };
  }
}

/**
 * True when `proof` shows the sender knows `secret`: an HMAC-SHA256 of the exact body bytes
 * (GitHub with its `sha256=` prefix, Gitea bare hex) or, for GitLab, the token itself. All
 * comparisons take constant time.
 */
export function verifyWebhook(forge: GitForge, secret: string, body: Buffer, proof: string): boolean {
  switch (forge) {
    case GitForge.GitHub:
      return equalConstantTime(proof, `sha256=${hmacHex(secret, body)}`);
    case GitForge.Gitea:
      return equalConstantTime(proof.toLowerCase(), hmacHex(secret, body));
    case GitForge.GitLab:
      return equalConstantTime(proof, secret);
  }
}

/**
 * Checks a delivery's proof against several secrets while its body streams in: one HMAC per
 * secret is fed chunk by chunk, so the body is never parsed, nor even held whole, before it is
 * known to be signed by one of them. GitLab sends its token in a header, so `tokenMatches` can
 * refuse a wrong one before a byte of the body is read. The body's SHA-256 is computed on the way
 * too: it keys replay protection by the signed content, whatever delivery id comes with it.
 */
export class WebhookSignatureCheck {
  private readonly macs: { readonly secret: string; readonly mac: Hmac }[];
  private readonly sha256: Hash = createHash('sha256');
  private digest: string | null = null;

  constructor(
    private readonly forge: GitForge,
    private readonly secrets: readonly string[],
  ) {
    this.macs =
      forge === GitForge.GitLab
        ? []
        : [...new Set(secrets)].map((secret) => ({ secret, mac: createHmac('sha256', secret) }));
  }

  update(chunk: Buffer): void {
    this.sha256.update(chunk);
    for (const m of this.macs) {
      m.mac.update(chunk);
    }
  }

  /** GitLab only: the secrets equal to the token (every secret tried, each in constant time). */
  tokenMatches(proof: string): string[] {
    // Hashed first so that neither the token's length nor a secret's shows in the timing.
    const p = createHash('sha256').update(proof).digest();
    return this.secrets.filter((s) => timingSafeEqual(p, createHash('sha256').update(s).digest()));
  }

  /** Once the whole body went through `update`: the secrets whose proof holds. Call once. */
  matching(proof: string): string[] {
    if (this.forge === GitForge.GitLab) {
      return this.tokenMatches(proof);
    }
    const wanted = this.forge === GitForge.GitHub ? proof : proof.toLowerCase();
    return this.macs
      .filter((m) => {
        const hex = m.mac.digest('hex');
        return equalConstantTime(wanted, this.forge === GitForge.GitHub ? `sha256=${hex}` : hex);
      })
      .map((m) => m.secret);
  }

  /** Hex SHA-256 of the body (after the whole body went through `update`). */
  bodyDigest(): string {
    this.digest ??= this.sha256.digest('hex');
    return this.digest;
  }
}

/**
 * The delivery id as replay protection compares it. The forges send UUIDs, which are
 * case-insensitive; without this a captured delivery resent with its id upper-cased was new.
 */
export function normaliseDeliveryId(id: string): string {
  return id.trim().toLowerCase();
}

/**
 * True when the JSON text nests arrays/objects no deeper than `maxDepth`. A linear scan that
 * allocates nothing, run before JSON.parse: a signed body is still user input, and a deep
 * nesting costs the parser and the schema checks far more than its size suggests. Malformed
 * text is left to JSON.parse to refuse.
 */
export function jsonDepthWithin(text: Buffer, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === 0x5c) {
        i++; // a backslash escapes the next byte (\" stays in the string)
      } else if (c === 0x22) {
        inString = false;
      }
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) {
        return false;
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return true;
}

/** Computes the signature header value a forge would send (tests, CLI tools). */
export function signWebhook(forge: GitForge, secret: string, body: Buffer): string {
  switch (forge) {
    case GitForge.GitHub:
      return `sha256=${hmacHex(secret, body)}`;
    case GitForge.Gitea:
      return hmacHex(secret, body);
    case GitForge.GitLab:
      return secret;
  }
}

/** A push as the three forges describe it, reduced to what a build needs. */
export interface PushEvent {
  /** Every URL the payload gives for the repository (clone, ssh, web). */
  readonly repositoryUrls: string[];
  /** `refs/heads/main`, `refs/tags/v1`… */
  readonly ref: string;
  /** The pushed commit; null when the ref was deleted. */
  readonly sha: string | null;
}

/** A pull (GitHub, Gitea) or merge (GitLab) request whose head commit is to be built. */
export interface PullRequestEvent {
  /** The base repository's URLs (the one the project names). */
  readonly repositoryUrls: string[];
  /** PR number (GitLab: the merge request's iid). */
  readonly number: number;
  /** opened, synchronize, reopened (GitHub); opened, synchronized, reopened (Gitea); open, update, reopen (GitLab). */
  readonly action: string;
  /** True when the action brings new code to build (opened, new commits, reopened). */
  readonly builds: boolean;
  readonly headSha: string;
  /** The head branch (in the fork, for a fork's request). */
  readonly headRef: string;
  /** True when the head lives in another repository than the base: its build gets no project secrets. */
  readonly fromFork: boolean;
}

export type ParsedWebhook =
  | { readonly kind: 'push'; readonly push: PushEvent }
  | { readonly kind: 'pr'; readonly pr: PullRequestEvent }
  | { readonly kind: 'other'; readonly event: string; readonly repositoryUrls: string[] };

const url = z.string().min(1);
const ZERO = /^0+$/;

// GitHub push: https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
// Gitea sends the same shape (https://docs.gitea.com/usage/webhooks#event-information).
const githubRepository = z.looseObject({
  clone_url: url.optional(),
  html_url: url.optional(),
  ssh_url: url.optional(),
  git_url: url.optional(),
  url: url.optional(),
});
const githubPush = z.looseObject({
  ref: z.string().min(1),
  after: z.string(),
  deleted: z.boolean().optional(),
  repository: githubRepository,
  // An annotated tag's `after` is the tag object; head_commit names the commit.
  head_commit: z.looseObject({ id: z.string() }).nullable().optional(),
});
// GitHub pull_request: https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request
// Gitea sends the same shape with `synchronized` (https://docs.gitea.com/usage/webhooks).
const prSide = z.looseObject({
  sha: z.string().min(1),
  ref: z.string().min(1),
  repo: z
    .looseObject({ id: z.union([z.number(), z.string()]).optional(), full_name: z.string().optional() })
    .nullable(),
});
const githubPullRequest = z.looseObject({
  action: z.string(),
  number: z.number().int().positive(),
  pull_request: z.looseObject({ head: prSide, base: prSide }),
  repository: githubRepository,
});
// GitLab push: https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events
const gitlabProject = z.looseObject({
  git_http_url: url.optional(),
  git_ssh_url: url.optional(),
  web_url: url.optional(),
  http_url: url.optional(),
  ssh_url: url.optional(),
  url: url.optional(),
  homepage: url.optional(),
});
const gitlabPush = z.looseObject({
  object_kind: z.enum(['push', 'tag_push']),
  ref: z.string().min(1),
  after: z.string(),
  checkout_sha: z.string().nullable().optional(),
  project: gitlabProject.optional(),
  repository: gitlabProject.optional(),
});
// GitLab Merge Request Hook: https://docs.gitlab.com/user/project/integrations/webhook_events/#merge-request-events
const gitlabMergeRequest = z.looseObject({
  object_kind: z.literal('merge_request'),
  project: gitlabProject.optional(),
  repository: gitlabProject.optional(),
  object_attributes: z.looseObject({
    iid: z.number().int().positive(),
    action: z.string().optional(),
    source_branch: z.string().min(1),
    source_project_id: z.number(),
    target_project_id: z.number(),
    last_commit: z.looseObject({ id: z.string().min(1) }),
    /** Set on an `update` that pushed commits (absent when only the title or labels changed). */
    oldrev: z.string().optional(),
  }),
});

const PR_BUILD_ACTIONS = new Set(['opened', 'synchronize', 'synchronized', 'reopened', 'open', 'reopen']);

function urlsOf(...objects: (Record<string, unknown> | undefined)[]): string[] {
  const out = new Set<string>();
  for (const o of objects) {
    for (const v of Object.values(o ?? {})) {
      if (typeof v === 'string' && v !== '') {
        out.add(v);
      }
    }
  }
  return [...out];
}

function repositoryUrlsOf(forge: GitForge, body: unknown): string[] {
  if (forge === GitForge.GitLab) {
    const p = z.looseObject({ project: gitlabProject.optional(), repository: gitlabProject.optional() });
    const r = p.safeParse(body);
    return r.success ? urlsOf(r.data.project, r.data.repository) : [];
  }
  const r = z.looseObject({ repository: githubRepository.optional() }).safeParse(body);
  return r.success ? urlsOf(r.data.repository) : [];
}

/**
 * Parses a webhook body (already JSON-decoded) into a push, or `other` for events that do not
 * build (GitHub's `ping`, tag pushes still count as `push`). Null when a push event's body does
 * not have a push's shape.
 */
export function parseWebhook(forge: GitForge, event: string | null, body: unknown): ParsedWebhook | null {
  const isPr = forge === GitForge.GitLab ? event === 'Merge Request Hook' : event === 'pull_request';
  if (isPr) {
    return parsePullRequest(forge, body);
  }
  const isPush =
    forge === GitForge.GitLab
      ? event === 'Push Hook' || event === 'Tag Push Hook' || event === 'System Hook'
      : event === 'push';
  if (!isPush) {
    return { kind: 'other', event: event ?? '(none)', repositoryUrls: repositoryUrlsOf(forge, body) };
  }
  if (forge === GitForge.GitLab) {
    const r = gitlabPush.safeParse(body);
    if (!r.success) {
      return null;
    }
    const sha = r.data.checkout_sha ?? r.data.after;
    return {
      kind: 'push',
      push: {
        ref: r.data.ref,
        sha: sha === '' || ZERO.test(sha) ? null : sha,
        repositoryUrls: urlsOf(r.data.project, r.data.repository),
      },
    };
  }
  const r = githubPush.safeParse(body);
  if (!r.success) {
    return null;
  }
  const deleted = r.data.deleted === true || ZERO.test(r.data.after);
  const commit = r.data.ref.startsWith('refs/tags/')
    ? (r.data.head_commit?.id ?? r.data.after)
    : r.data.after;
  return {
    kind: 'push',
    push: { ref: r.data.ref, sha: deleted ? null : commit, repositoryUrls: urlsOf(r.data.repository) },
  };
}

/** A pull/merge request payload, or null when it does not have the documented shape. */
function parsePullRequest(forge: GitForge, body: unknown): ParsedWebhook | null {
  if (forge === GitForge.GitLab) {
    const r = gitlabMergeRequest.safeParse(body);
    if (!r.success) {
      return null;
    }
    const a = r.data.object_attributes;
    const action = a.action ?? '';
    return {
      kind: 'pr',
      pr: {
        repositoryUrls: urlsOf(r.data.project, r.data.repository),
        number: a.iid,
        action,
        builds: PR_BUILD_ACTIONS.has(action) || (action === 'update' && a.oldrev !== undefined),
        headSha: a.last_commit.id,
        headRef: a.source_branch,
        fromFork: a.source_project_id !== a.target_project_id,
      },
    };
  }
  const r = githubPullRequest.safeParse(body);
  if (!r.success) {
    return null;
  }
  const { head, base } = r.data.pull_request;
  // A fork that was deleted leaves head.repo null: not the base repository either way.
  const sameRepo =
    head.repo !== null &&
    base.repo !== null &&
    (head.repo.id !== undefined && base.repo.id !== undefined
      ? head.repo.id === base.repo.id
      : head.repo.full_name === base.repo.full_name);
  return {
    kind: 'pr',
    pr: {
      repositoryUrls: urlsOf(r.data.repository),
      number: r.data.number,
      action: r.data.action,
      builds: PR_BUILD_ACTIONS.has(r.data.action),
      headSha: head.sha,
      headRef: head.ref,
      fromFork: !sameRepo,
    },
  };
}
