import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { BuildRecord, ProjectRefState, ProjectTrigger, ProjectView, StratumError } from '@stratum/contracts';
import { BuildRecordStore, SecretBox } from '@stratum/jobs';
import { checkRepositoryUrl, isCommitSha } from '@stratum/git';
import { ProjectBuilder } from './project-builder';
import { ProjectSecretStore } from './project-secret-store';
import {
  FORGE_TOKEN_PURPOSE,
  forgeTargetOf,
  ProjectStore,
  projectView,
  StoredProject,
} from './project-store';
import { CreateProjectBody, TriggerProjectBody, UpdateProjectBody } from './projects.dto';

/** `/api/v1/projects`: git repositories whose pushes or schedule build images. */
@Injectable()
export class ProjectsService {
  private readonly tokens: SecretBox;

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly store: ProjectStore,
    private readonly builder: ProjectBuilder,
    private readonly secrets: ProjectSecretStore,
    private readonly builds: BuildRecordStore,
  ) {
    this.tokens = new SecretBox(config.auth.secret, FORGE_TOKEN_PURPOSE);
  }

  /** A forge token as stored: sealed under AUTH_SECRET (refused without one), null stays null. */
  private sealToken(token: string | null): string | null {
    if (token === null) {
      return null;
    }
    if (!this.tokens.available) {
      throw new StratumError(
        'BAD_REQUEST',
        'invalid request: set AUTH_SECRET to store a statusToken or notifySecret (they are kept encrypted under it)',
      );
    }
    return this.tokens.seal(Buffer.from(token));
  }

  /** Each ref the project built, with its latest build, newest first. */
  /** Each ref the project built with its latest build; `visible` (API_AUTH) drops refs whose latest build it hides. */
  async refs(name: string, visible?: (build: BuildRecord) => boolean): Promise<ProjectRefState[]> {
    await this.store.require(name);
    const latest = await this.builds.latestByRef(name);
    return latest
      .filter(({ build }) => visible === undefined || visible(build))
      .map(({ ref, build }) => ({
        ref,
        buildId: build.id,
        state: build.state,
        sha: build.source?.sha ?? null,
        commitUrl: build.source?.commitUrl ?? null,
        createdAt: build.createdAt,
        finishedAt: build.finishedAt,
      }));
  }

  async create(body: CreateProjectBody): Promise<ProjectView> {
    const now = new Date().toISOString();
    const project = this.check({
      ...body,
      statusToken: this.sealToken(body.statusToken),
      notifySecret: this.sealToken(body.notifySecret),
      repository: body.repository ?? body.name,
      createdAt: now,
      updatedAt: now,
      lastTrigger: null,
    });
    await this.store.create(project);
    return projectView(project);
  }

  async list(): Promise<ProjectView[]> {
    return (await this.store.list()).map(projectView);
  }

  async get(name: string): Promise<ProjectView> {
    return projectView(await this.store.require(name));
  }

  /** Changes the fields given; secrets left out stay as they are (GET never shows them). */
  async update(name: string, body: UpdateProjectBody): Promise<ProjectView> {
    const defined: Record<string, unknown> = Object.fromEntries(
      Object.entries(body).filter(([, v]) => v !== undefined),
    );
    if (body.statusToken !== undefined) {
      defined.statusToken = this.sealToken(body.statusToken);
    }
    if (body.notifySecret !== undefined) {
      defined.notifySecret = this.sealToken(body.notifySecret);
    }
    const updated = await this.store.update(name, (p) =>
      this.check({ ...p, ...defined, updatedAt: new Date().toISOString() }),
    );
    return projectView(updated);
  }

  async delete(name: string): Promise<void> {
    if (!(await this.store.delete(name))) {
      throw new StratumError('PROJECT_UNKNOWN', `no project named "${name}"`);
    }
    await this.secrets.removeAll(name);
  }

  /** Builds a branch's head (or the given commit) now. */
  async trigger(name: string, body: TriggerProjectBody): Promise<ProjectTrigger> {
    const project = await this.store.require(name);
    const branch = body.branch ?? project.scheduleBranch ?? project.branches.find((b) => !b.endsWith('*'));
    if (branch === undefined) {
      throw new StratumError('BAD_REQUEST', 'name the branch to build');
    }
    const sha = body.sha ?? (await this.builder.headOf(project, branch));
    if (!isCommitSha(sha)) {
      throw new StratumError('BAD_REQUEST', `not a commit id: ${sha}`);
    }
    return this.builder.build(project, branch, sha, 'manual');
  }

  private check(p: StoredProject): StoredProject {
    if ((p.notifyUrl ?? null) !== null && (p.notifySecret ?? null) === null) {
      throw new StratumError('BAD_REQUEST', 'invalid request: notifySecret: required with a notifyUrl');
    }
    if (p.statusToken !== undefined && p.statusToken !== null) {
      if ((p.forge ?? null) === null) {
        throw new StratumError('BAD_REQUEST', 'invalid request: forge: required with a statusToken');
      }
      if (forgeTargetOf(p) === null) {
        throw new StratumError(
          'BAD_REQUEST',
          'invalid request: forgeApiUrl and forgeRepository: required when repoUrl names no forge host',
        );
      }
    }
    const problem = checkRepositoryUrl(p.repoUrl, this.config.git.allowFileUrls);
    if (problem !== null) {
      throw new StratumError('BAD_REQUEST', `invalid request: repoUrl: ${problem}`);
    }
    if (p.schedule !== null && p.scheduleBranch === null && p.branches.every((b) => b.endsWith('*'))) {
      throw new StratumError(
        'BAD_REQUEST',
        'invalid request: scheduleBranch: required when every branch is a pattern',
      );
    }
    return p;
  }
}
