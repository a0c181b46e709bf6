import { Inject, Injectable, Logger } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  CommitStatusJobData,
  CommitStatusJobResult,
  GitForge,
  isTerminalBuildState,
} from '@stratum/contracts';
import { commitStateOf, commitStatusRequest } from '@stratum/git';
import { BuildRecordStore, SecretBox } from '@stratum/jobs';
import { FORGE_TOKEN_PURPOSE, forgeTargetOf, ProjectStore } from '../projects/project-store';

/** Forge answers worth another try later: rate limits, timeouts, the forge's own faults. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

/** The first line of a forge's answer, short, for the job's failure reason (never the request). */
async function answerSnippet(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  return text.replace(/\s+/g, ' ').slice(0, 200);
}

/**
 * Sends a build's commit status to its project's forge: the state of the job's phase, if the
 * build is still there (a `queued` or `running` job that runs after the build moved on sends
 * nothing: the later phase's job does, so each state is sent once), context `stratum/<project>`,
 * target_url the build's dashboard page. Nothing is sent for a build without a project, or a
 * project without a forge token. A forge outage or 5xx/429 throws, and BullMQ retries with
 * backoff; a refusal (401, 404, 422…) fails the job at once (UnrecoverableError) naming the
 * status code. The token only ever goes into the request's header: never into a log line, an
 * error or the job.
 */
@Injectable()
export class CommitStatusService {
  private readonly logger = new Logger('CommitStatus');
  private readonly tokens: SecretBox;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly builds: BuildRecordStore,
    private readonly projects: ProjectStore,
  ) {
    this.tokens = new SecretBox(config.auth.secret, FORGE_TOKEN_PURPOSE);
  }

  private dashboardUrl(buildId: string): string {
    const base = this.config.api.publicUrl ?? `http://${this.config.api.host}:${this.config.api.port}`;
    return `${base.replace(/\/+$/, '')}/#/builds/${buildId}`;
  }

  /**
   * Sends the build's current state. When that was not final but the build finished while it
   * was on its way, the final state is sent again after it: two status jobs of a build may run
   * at once, and the forge keeps whichever arrives last.
   */
  async send(data: CommitStatusJobData): Promise<CommitStatusJobResult> {
    const first = await this.sendOnce(data);
    if (first.sent !== 'pending' && first.sent !== 'running') {
      return first;
    }
    const now = await this.builds.get(data.buildId);
    return now !== null && isTerminalBuildState(now.state)
      ? this.sendOnce({ ...data, phase: 'finished' })
      : first;
  }

  private async sendOnce(data: CommitStatusJobData): Promise<CommitStatusJobResult> {
    const skip = (reason: string): CommitStatusJobResult => ({ buildId: data.buildId, sent: null, reason });
    const build = await this.builds.get(data.buildId);
    const source = build?.source;
    if (build === null || source === undefined || source.project === null || source.sha === null) {
      return skip('no build of a project');
    }
    const project = await this.projects.get(source.project);
    if (project === null || project.statusToken === undefined || project.statusToken === null) {
      return skip('the project has no forge token');
    }
    const target = forgeTargetOf(project);
    if (target === null) {
      return skip('the project names no forge (forge, forgeApiUrl, forgeRepository)');
    }
    const token = this.tokens.open(project.statusToken)?.toString('utf8') ?? null;
    if (token === null) {
      throw new UnrecoverableError(
        `the forge token of project ${project.name} cannot be opened (set again, or AUTH_SECRET changed)`,
      );
    }
    if (data.phase === 'running' && target.forge !== GitForge.GitLab) {
      return skip('GitHub and Gitea have no running state (the commit stays pending)');
    }
    const state = commitStateOf(build.state, target.forge);
    // Each phase sends its own state once: when the build has moved on, the later phase's job
    // (written in the same transaction as that change, so it exists) sends the newer state.
    if (data.phase !== 'finished' && state !== (data.phase === 'queued' ? 'pending' : 'running')) {
      return skip(`the build is ${build.state} now; that status is sent by its own job`);
    }
    const ref = source.ref?.replace(/^refs\/(heads|tags)\//, '') ?? null;
    const req = commitStatusRequest(
      target,
      source.sha,
      {
        state,
        context: `stratum/${project.name}`,
        targetUrl: this.dashboardUrl(build.id),
        description: `build ${build.state}`,
        ref,
      },
      token,
    );
    const where = `${target.forge} ${target.repository}@${source.sha.slice(0, 12)}`;
    let res: Response;
    try {
      res = await fetch(req.url, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        redirect: 'error',
        signal: AbortSignal.timeout(this.config.git.outgoing.timeoutMs),
      });
    } catch (err) {
      // fetch's errors name the URL at most, never the headers.
      const cause =
        err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
      throw new Error(`commit status to ${where} not delivered: ${cause}`, { cause: err });
    }
    if (res.ok) {
      await res.body?.cancel().catch(() => undefined);
      this.logger.log(`${where}: ${state} (build ${build.id})`);
      return { buildId: build.id, sent: state };
    }
    const snippet = await answerSnippet(res);
    // GitLab refuses to set a status a commit already has ("Cannot transition status via :x from :x").
    if (target.forge === GitForge.GitLab && res.status === 400 && /cannot transition status/i.test(snippet)) {
      return { buildId: build.id, sent: state, reason: 'already set' };
    }
    const message = `commit status to ${where}: the forge answered ${res.status} ${snippet}`;
    if (RETRYABLE.has(res.status)) {
      throw new Error(message);
    }
    throw new UnrecoverableError(message);
  }
}
