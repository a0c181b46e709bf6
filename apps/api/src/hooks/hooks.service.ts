import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { GitForge, ProjectTrigger, StratumError, WebhookResult } from '@stratum/contracts';
import { parseWebhook, repositoryKey, verifyWebhook, webhookCredentials, WebhookHeaders } from '@stratum/git';
import { REDIS } from '@stratum/jobs';
import { branchMatches, ProjectBuilder } from '../projects/project-builder';
import { ProjectKeys, ProjectStore } from '../projects/project-store';

const unauthorized = (message: string): StratumError => new StratumError('UNAUTHORIZED', message);

/**
 * Receives forge webhooks. Order matters: the proof and delivery id must be present; the
 * payload names the repository, whose projects' secrets are the only ones tried; a delivery id
 * is remembered (Redis, with a TTL) only once the proof holds, so a second delivery with it is
 * refused as a replay. Only then does a push of a configured branch build.
 */
@Injectable()
export class HooksService {
  private readonly logger = new Logger('HooksService');

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly projects: ProjectStore,
    private readonly builder: ProjectBuilder,
  ) {}

  async receive(forge: GitForge, headers: WebhookHeaders, body: Buffer): Promise<WebhookResult> {
    const creds = webhookCredentials(forge, headers);
    if (creds.proof === null) {
      throw unauthorized(`missing ${forge === GitForge.GitLab ? 'X-Gitlab-Token' : 'webhook signature'}`);
    }
    if (creds.deliveryId === null || creds.deliveryId.length > 200) {
      throw unauthorized('missing delivery id (replays could not be told apart)');
    }
    let payload: unknown;
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch {
      throw new StratumError(
        'BAD_REQUEST',
        'the webhook body is not JSON (configure the forge to send application/json)',
      );
    }
    const parsed = parseWebhook(forge, creds.event, payload);
    if (parsed === null) {
      throw new StratumError(
        'BAD_REQUEST',
        `the ${creds.event ?? ''} payload does not have the shape of a push`,
      );
    }
    const urls = parsed.kind === 'push' ? parsed.push.repositoryUrls : parsed.repositoryUrls;
    const keys = new Set(urls.map(repositoryKey));
    const candidates = (await this.projects.list()).filter((p) => keys.has(repositoryKey(p.repoUrl)));
    if (candidates.length === 0) {
      return { status: 'ignored', reason: `no project builds ${urls[0] ?? 'this repository'}` };
    }
    const verified = candidates.filter(
      (p) => p.secret !== null && verifyWebhook(forge, p.secret, body, creds.proof as string),
    );
    if (verified.length === 0) {
      throw unauthorized('the webhook signature does not match the project’s secret');
    }
    const fresh = await this.redis.set(
      ProjectKeys.delivery(forge, creds.deliveryId),
      new Date().toISOString(),
      'EX',
      this.config.git.replayTtlSeconds,
      'NX',
    );
    if (fresh !== 'OK') {
      throw unauthorized(`delivery ${creds.deliveryId} was received before (replay)`);
    }
    if (parsed.kind === 'other') {
      return { status: 'ignored', reason: `event "${parsed.event}" does not build` };
    }
    const { ref, sha } = parsed.push;
    if (!ref.startsWith('refs/heads/')) {
      return { status: 'ignored', reason: `${ref} is not a branch` };
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
}
