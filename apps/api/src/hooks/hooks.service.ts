import { Readable } from 'node:stream';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { BuildTrigger, GitForge, ProjectTrigger, StratumError, WebhookResult } from '@stratum/contracts';
import {
  isCommitSha,
  jsonDepthWithin,
  normaliseDeliveryId,
  parseWebhook,
  PullRequestEvent,
  pullRequestRef,
  repositoryKey,
  webhookCredentials,
  WebhookHeaders,
  WebhookSignatureCheck,
} from '@stratum/git';
import { REDIS } from '@stratum/jobs';
import { branchMatches, ProjectBuilder } from '../projects/project-builder';
import { ProjectKeys, ProjectStore, StoredProject } from '../projects/project-store';
import { ByteBudget, readRawBody } from './hooks-request.middleware';

/** Push payloads nest about six levels deep; far deeper is an attack on the parser. */
const MAX_JSON_DEPTH = 64;

const unauthorized = (message: string): StratumError => new StratumError('UNAUTHORIZED', message);

/**
 * Receives forge webhooks. Order matters, and nothing of the body is trusted before its proof
 * holds: the proof and delivery id must be present; the body is read under a size cap (and a
 * budget shared by all deliveries in flight) while its HMAC is computed under every project's
 * secret (GitLab's token is checked before the body is read); only a body signed with a
 * project's secret is depth-checked and parsed. The payload then names the repository, and only
 * projects of that repository whose secret signed it count. The delivery id (normalised) and the
 * body's digest are remembered (Redis, with a TTL) so that neither the same delivery nor the same
 * signed content under a new id builds twice. Only then does a push of a configured branch build.
 */
@Injectable()
export class HooksService {
  private readonly logger = new Logger('HooksService');
  private readonly inflight: ByteBudget;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly projects: ProjectStore,
    private readonly builder: ProjectBuilder,
  ) {
    this.inflight = new ByteBudget(config.git.webhookMaxInflightBytes);
  }

  async receive(
    forge: GitForge,
    headers: WebhookHeaders,
    request: Readable & { headers?: WebhookHeaders },
  ): Promise<WebhookResult> {
    const creds = webhookCredentials(forge, headers);
    if (creds.proof === null) {
      throw unauthorized(`missing ${forge === GitForge.GitLab ? 'X-Gitlab-Token' : 'webhook signature'}`);
    }
    const proof = creds.proof;
    if (creds.deliveryId === null || creds.deliveryId.length > 200) {
      throw unauthorized('missing delivery id (replays could not be told apart)');
    }
    const projects = (await this.projects.list()).filter((p) => p.secret !== null);
    if (projects.length === 0) {
      throw unauthorized('no project has a webhook secret');
    }
    const check = new WebhookSignatureCheck(
      forge,
      projects.map((p) => p.secret as string),
    );
    if (forge === GitForge.GitLab && check.tokenMatches(proof).length === 0) {
      throw unauthorized('the webhook token does not match any project’s secret');
    }
    const { body, held } = await readRawBody(request, {
      maxBytes: this.config.git.webhookMaxBodyBytes,
      budget: this.inflight,
      onChunk: (chunk) => check.update(chunk),
    });
    let payload: unknown;
    let signedBy: Set<string>;
    try {
      signedBy = new Set(check.matching(proof));
      if (signedBy.size === 0) {
        throw unauthorized('the webhook signature does not match any project’s secret');
      }
      if (!jsonDepthWithin(body, MAX_JSON_DEPTH)) {
        throw new StratumError(
          'WEBHOOK_INVALID',
          `the webhook body nests deeper than ${MAX_JSON_DEPTH} levels`,
        );
      }
      try {
        payload = JSON.parse(body.toString('utf8'));
      } catch {
        throw new StratumError(
          'WEBHOOK_INVALID',
          'the webhook body is not JSON (configure the forge to send application/json)',
        );
      }
    } finally {
      // The raw bytes are not needed past the parse; a build's git fetch may take minutes.
      this.inflight.give(held);
    }
    const parsed = parseWebhook(forge, creds.event, payload);
    if (parsed === null) {
      throw new StratumError(
        'WEBHOOK_INVALID',
        `the ${creds.event ?? ''} payload does not have the shape its event documents`,
      );
    }
    const urls =
      parsed.kind === 'push'
        ? parsed.push.repositoryUrls
        : parsed.kind === 'pr'
          ? parsed.pr.repositoryUrls
          : parsed.repositoryUrls;
    const keys = new Set(urls.map(repositoryKey));
    const verified = projects.filter(
      (p) => keys.has(repositoryKey(p.repoUrl)) && signedBy.has(p.secret as string),
    );
    if (verified.length === 0) {
      return { status: 'ignored', reason: `no project builds ${urls[0] ?? 'this repository'}` };
    }
    const deliveryId = normaliseDeliveryId(creds.deliveryId);
    const ttl = this.config.git.replayTtlSeconds;
    const now = new Date().toISOString();
    // Both are set either way: a replay under a new id also burns that id.
    const [[, byId], [, byBody]] = (await this.redis
      .multi()
      .set(ProjectKeys.delivery(forge, deliveryId), now, 'EX', ttl, 'NX')
      .set(ProjectKeys.deliveryBody(forge, check.bodyDigest()), now, 'EX', ttl, 'NX')
      .exec()) as [[Error | null, string | null], [Error | null, string | null]];
    if (byId !== 'OK') {
      throw unauthorized(`delivery ${creds.deliveryId} was received before (replay)`);
    }
    if (byBody !== 'OK') {
      throw unauthorized('a delivery with this exact signed body was received before (replay)');
    }
    if (parsed.kind === 'other') {
      return { status: 'ignored', reason: `event "${parsed.event}" does not build` };
    }
    if (parsed.kind === 'pr') {
      return this.pullRequest(forge, creds.deliveryId, parsed.pr, verified);
    }
    const { ref, sha } = parsed.push;
    if (ref.startsWith('refs/tags/')) {
      return this.tagPush(forge, creds.deliveryId, ref, sha, verified);
    }
    if (!ref.startsWith('refs/heads/')) {
      return { status: 'ignored', reason: `${ref} is not a branch or a tag` };
    }
    const branch = ref.slice('refs/heads/'.length);
    if (sha === null) {
      return { status: 'ignored', reason: `branch ${branch} was deleted` };
    }
    const building = verified.filter((p) => branchMatches(p.branches, branch));
    if (building.length === 0) {
      return {
        status: 'ignored',
        reason: `branch ${branch} is not built by ${verified.map((p) => p.name).join(', ')}`,
      };
    }
    const builds: ProjectTrigger[] = [];
    for (const project of building) {
      builds.push(await this.builder.build(project, branch, sha, 'webhook'));
    }
    this.logger.log(
      `${forge} delivery ${creds.deliveryId}: ${branch}@${sha.slice(0, 12)} → ${builds.length} build(s)`,
    );
    return { status: 'accepted', builds };
  }

  /** A tag push builds the tagged commit in each project whose tag patterns match it. */
  private async tagPush(
    forge: GitForge,
    deliveryId: string,
    ref: string,
    sha: string | null,
    verified: readonly StoredProject[],
  ): Promise<WebhookResult> {
    const tag = ref.slice('refs/tags/'.length);
    if (sha === null) {
      return { status: 'ignored', reason: `tag ${tag} was deleted` };
    }
    const building = verified.filter((p) => branchMatches(p.tagPatterns ?? ['*'], tag));
    if (building.length === 0) {
      return {
        status: 'ignored',
        reason: `tag ${tag} is not built by ${verified.map((p) => p.name).join(', ')}`,
      };
    }
    const builds: ProjectTrigger[] = [];
    for (const project of building) {
      builds.push(await this.builder.build(project, tag, sha, 'webhook', { ref, trigger: BuildTrigger.Tag }));
    }
    this.logger.log(
      `${forge} delivery ${deliveryId}: tag ${tag}@${sha.slice(0, 12)} → ${builds.length} build(s)`,
    );
    return { status: 'accepted', builds };
  }

  /**
   * A pull/merge request that was opened, reopened or got new commits builds its head commit
   * (`pr-{n}`), as `refs/pull/<n>/head`. One from a fork is built untrusted: no project secrets.
   */
  private async pullRequest(
    forge: GitForge,
    deliveryId: string,
    pr: PullRequestEvent,
    verified: readonly StoredProject[],
  ): Promise<WebhookResult> {
    if (!pr.builds) {
      return {
        status: 'ignored',
        reason: `pull request #${pr.number} ${pr.action || 'event'} brings no new code`,
      };
    }
    if (!isCommitSha(pr.headSha)) {
      throw new StratumError('WEBHOOK_INVALID', `pull request #${pr.number}: head is not a commit id`);
    }
    const building = verified.filter((p) => p.pullRequests ?? true);
    if (building.length === 0) {
      return {
        status: 'ignored',
        reason: `pull requests are not built by ${verified.map((p) => p.name).join(', ')}`,
      };
    }
    const ref = `refs/pull/${pr.number}/head`;
    const builds: ProjectTrigger[] = [];
    for (const project of building) {
      builds.push(
        await this.builder.build(project, pr.headRef, pr.headSha, 'webhook', {
          ref,
          trigger: BuildTrigger.Pr,
          prNumber: pr.number,
          // The head of a fork's PR is in the base repository under this ref (not a branch).
          fetchRef: pullRequestRef(forge, pr.number),
          trusted: !pr.fromFork,
        }),
      );
    }
    this.logger.log(
      `${forge} delivery ${deliveryId}: pull request #${pr.number}${pr.fromFork ? ' (fork, untrusted)' : ''} @${pr.headSha.slice(0, 12)} → ${builds.length} build(s)`,
    );
    return { status: 'accepted', builds };
  }
}
