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

export type ParsedWebhook =
  | { readonly kind: 'push'; readonly push: PushEvent }
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
  object_kind: z.literal('push'),
  ref: z.string().min(1),
  after: z.string(),
  checkout_sha: z.string().nullable().optional(),
  project: gitlabProject.optional(),
  repository: gitlabProject.optional(),
});

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
  const isPush =
    forge === GitForge.GitLab ? event === 'Push Hook' || event === 'System Hook' : event === 'push';
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
  return {
    kind: 'push',
    push: { ref: r.data.ref, sha: deleted ? null : r.data.after, repositoryUrls: urlsOf(r.data.repository) },
  };
}
