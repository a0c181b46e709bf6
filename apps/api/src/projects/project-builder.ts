import { randomUUID } from 'node:crypto';
import { lstat, mkdir, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { resolveBeneath } from '@stratum/confine';
import { BuildSource, BuildTrigger, ProjectTrigger, StratumError } from '@stratum/contracts';
import { planContextFiles } from '@stratum/dockerfile';
import {
  commitWebUrl,
  fetchCommit,
  GitSource,
  isSshRepositoryUrl,
  readCommitInfo,
  redact,
  resolveBranch,
  tarContextFiles,
} from '@stratum/git';
import { parseReference } from '@stratum/oci';
import { BLOB_STORE, BlobStore } from '@stratum/storage';
import { BuildsService } from '../builds/builds.service';
import { ProjectSecretStore } from './project-secret-store';

/** The ssh id of a project's secrets its own repository is fetched with (its deploy key). */
export const PROJECT_FETCH_SSH_ID = 'default';
import { ProjectStore, StoredProject } from './project-store';

/** `{branch}` as a tag: the tag grammar's characters only, at most 128 of them. */
function tagSafe(branch: string): string {
  const t = branch.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[.-]+/, '');
  return (t === '' ? 'branch' : t).slice(0, 128);
}

/** What tag templates are filled in with; a template naming a value the build lacks is left out. */
export interface TagValues {
  readonly repo: string;
  readonly sha: string;
  readonly branch?: string;
  readonly tag?: string;
  readonly pr?: number;
}

/**
 * Tag templates filled in for one commit: `{repo}`, `{branch}`, `{tag}` (made tag-safe), `{pr}`,
 * `{sha}`, `{shortsha}` and `{sha:N}` (the first N hex digits). A template using `{tag}` in a
 * branch build (or `{branch}` in a tag build) is skipped rather than filled with nothing.
 */
export function renderTags(templates: readonly string[], v: TagValues): string[] {
  const values: Record<string, string | undefined> = {
    repo: v.repo,
    branch: v.branch === undefined ? undefined : tagSafe(v.branch),
    tag: v.tag === undefined ? undefined : tagSafe(v.tag),
    pr: v.pr === undefined ? undefined : String(v.pr),
    sha: v.sha,
    shortsha: v.sha.slice(0, 7),
  };
  const out: string[] = [];
  for (const t of templates) {
    let missing = false;
    const tag = t.replace(
      /\{(repo|branch|tag|pr|sha|shortsha)(?::(\d{1,2}))?\}/g,
      (_, k: string, n?: string) => {
        const value = values[k];
        if (value === undefined) {
          missing = true;
          return '';
        }
        return n === undefined ? value : value.slice(0, Math.max(1, Number(n)));
      },
    );
    if (!missing) {
      out.push(tag);
    }
  }
  return [...new Set(out)];
}

/** Tags of a tag push's build when the project names none. */
export const DEFAULT_TAG_TEMPLATES: readonly string[] = ['{repo}:{tag}'];
/** Tags of a pull/merge request's build when the project names none. */
export const DEFAULT_PR_TEMPLATES: readonly string[] = ['{repo}:pr-{pr}'];

/** True when `branch` is one of the project's (a pattern ending in `*` matches a prefix). */
export function branchMatches(patterns: readonly string[], branch: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? branch.startsWith(p.slice(0, -1)) : p === branch));
}

/** How a commit came to be built, beyond its branch and id. */
export interface BuildOrigin {
  /** The git ref (default `refs/heads/<branch>`). */
  readonly ref?: string;
  /** Default: from the trigger's source (webhook: push, schedule: cron, manual: manual). */
  readonly trigger?: BuildTrigger;
  readonly prNumber?: number;
  /**
   * The ref fetched when the server refuses the commit id itself (a pull request's head ref,
   * see pullRequestRef). Default: the branch (a push), the tag (a tag push).
   */
  readonly fetchRef?: string;
  /**
   * False for code from outside the repository (a fork's pull request): such a build must get
   * none of the project's secrets. Default true.
   */
  readonly trusted?: boolean;
}

const TRIGGER_OF_SOURCE: Readonly<Record<ProjectTrigger['source'], BuildTrigger>> = {
  webhook: BuildTrigger.Push,
  schedule: BuildTrigger.Cron,
  manual: BuildTrigger.Manual,
};

/**
 * Turns a commit of a project into a build: fetches it (git CLI, one commit, time-limited),
 * tars the context as the CLI would (`.dockerignore` honoured, `.git` left out), stores it as a
 * blob and creates the build tagged from the project's templates. The checkout is always removed.
 */
@Injectable()
export class ProjectBuilder {
  private readonly logger = new Logger('ProjectBuilder');

  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    private readonly projects: ProjectStore,
    private readonly moduleRef: ModuleRef,
    private readonly secrets: ProjectSecretStore,
  ) {}

  /** Where to fetch from; `short`: with the connect timeout, for calls that only ask the server. */
  /**
   * How the project's repository is fetched. Over ssh (`ssh://`, `git@host:`): with the
   * project's deploy key (its ssh id "default", written 0600 for that one git command and
   * removed after) and its known_hosts, checked strictly; a deploy key without known_hosts is
   * refused rather than trusting whatever host answers.
   */
  private async source(project: StoredProject, short = false): Promise<GitSource> {
    const seconds = short ? this.config.git.connectTimeoutSeconds : this.config.git.fetchTimeoutSeconds;
    const base = {
      url: project.repoUrl,
      credentials: project.credentials,
      timeoutMs: seconds * 1000,
      allowFile: this.config.git.allowFileUrls,
    };
    if (!isSshRepositoryUrl(project.repoUrl)) {
      return base;
    }
    const keys = await this.secrets.sshKeys(project.name, PROJECT_FETCH_SSH_ID);
    const knownHosts = project.sshKnownHosts ?? null;
    if (knownHosts === null) {
      if (keys !== null) {
        throw new StratumError(
          'GIT_FETCH_FAILED',
          `project "${project.name}" has a deploy key ("${PROJECT_FETCH_SSH_ID}") for ${redact(project.repoUrl)} but no sshKnownHosts to check the server's host key against: set them (PUT /api/v1/projects/${project.name} {"sshKnownHosts": "<lines of ssh-keyscan HOST, checked out of band>"})`,
        );
      }
      return base;
    }
    return { ...base, ssh: { keys: keys ?? [], knownHosts } };
  }

  /** The commit a branch of the project points at now (scheduled and manual builds). */
  async headOf(project: StoredProject, branch: string): Promise<string> {
    const dir = await this.workDir();
    try {
      const sha = await resolveBranch(await this.source(project, true), branch, dir);
      if (sha === null) {
        throw new StratumError(
          'GIT_FETCH_FAILED',
          `branch "${branch}" not found in ${redact(project.repoUrl)}`,
        );
      }
      return sha;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Builds `sha` of `branch`. Never throws for a failure of the fetch or the build request:
   * the trigger carries the error (and is recorded on the project) instead.
   */
  async build(
    project: StoredProject,
    branch: string,
    sha: string,
    source: ProjectTrigger['source'],
    origin: BuildOrigin = {},
  ): Promise<ProjectTrigger> {
    const kind = origin.trigger ?? TRIGGER_OF_SOURCE[source];
    const tags =
      kind === BuildTrigger.Tag
        ? renderTags(project.tagTemplates ?? DEFAULT_TAG_TEMPLATES, {
            repo: project.repository,
            sha,
            tag: branch,
          })
        : kind === BuildTrigger.Pr
          ? renderTags(project.prTemplates ?? DEFAULT_PR_TEMPLATES, {
              repo: project.repository,
              sha,
              branch,
              pr: origin.prNumber,
            })
          : renderTags(project.tags, { repo: project.repository, sha, branch });
    let trigger: ProjectTrigger;
    try {
      const buildSource: BuildSource = {
        trigger: kind,
        project: project.name,
        ref: origin.ref ?? `refs/heads/${branch}`,
        sha,
        author: null,
        message: null,
        prNumber: origin.prNumber ?? null,
        commitUrl: commitWebUrl(project.forge ?? null, project.repoUrl, sha),
        trusted: origin.trusted ?? true,
      };
      // What to fetch when a server will not serve a bare commit id: the ref that holds it.
      const fallbackRef =
        origin.fetchRef ??
        (kind === BuildTrigger.Tag
          ? `refs/tags/${branch}`
          : kind === BuildTrigger.Pr
            ? null
            : `refs/heads/${branch}`);
      const buildId: string = await this.buildNow(
        project,
        fallbackRef,
        sha,
        tags,
        buildSource,
        origin.trusted ?? true,
      );
      if ((project.autoCancel ?? true) && (kind === BuildTrigger.Push || kind === BuildTrigger.Pr)) {
        await this.cancelSuperseded(project, buildSource.ref as string, buildId);
      }
      trigger = { source, branch, sha, buildId, tags, error: null, at: new Date().toISOString() };
      this.logger.log(`project ${project.name}: ${branch}@${sha.slice(0, 12)} is build ${buildId}`);
    } catch (err) {
      const message = redact(err instanceof Error ? err.message : String(err));
      trigger = { source, branch, sha, buildId: null, tags, error: message, at: new Date().toISOString() };
      this.logger.warn(
        `project ${project.name}: ${branch}@${sha.slice(0, 12)} could not be built: ${message}`,
      );
    }
    await this.projects.recordTrigger(project.name, trigger);
    return trigger;
  }

  /** Auto-cancel of the builds a newer push supersedes; a failure is logged, never the new build's. */
  private async cancelSuperseded(project: StoredProject, ref: string, buildId: string): Promise<void> {
    try {
      const builds = this.moduleRef.get(BuildsService, { strict: false });
      const cancelled = await builds.cancelSuperseded(project.name, ref, buildId);
      if (cancelled.length > 0) {
        this.logger.log(`project ${project.name}: ${ref} build ${buildId} cancelled ${cancelled.join(', ')}`);
      }
    } catch (err) {
      this.logger.warn(
        `project ${project.name}: auto-cancel for ${ref} failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  private async workDir(): Promise<string> {
    const dir = join(this.config.dataDir, 'git', randomUUID());
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /**
   * The id of the project secrets bundle a build gets, or undefined for none. THE one place
   * project secrets attach to a git-triggered build: a copy of the project's secrets and ssh
   * keys in a bundle of the build's own (deleted when it ends); an untrusted build (a fork's
   * pull request) never gets one.
   */
  private async projectSecretsFor(project: StoredProject, trusted: boolean): Promise<string | undefined> {
    if (!trusted) {
      return undefined; // never, whatever the project holds
    }
    return (await this.secrets.bundleFor(project.name)) ?? undefined;
  }

  private async buildNow(
    project: StoredProject,
    fallbackRef: string | null,
    sha: string,
    tags: string[],
    buildSource: BuildSource,
    trusted: boolean,
  ): Promise<string> {
    const dir = await this.workDir();
    try {
      const checkout = join(dir, 'checkout');
      // The server must answer an ls-remote within the connect timeout before the fetch gets
      // the long one: a silent host or port fails the request in seconds, not minutes.
      const branch =
        fallbackRef?.startsWith('refs/heads/') === true ? fallbackRef.slice('refs/heads/'.length) : 'HEAD';
      await resolveBranch(await this.source(project, true), branch, dir);
      const { submodules } = await fetchCommit(await this.source(project), sha, fallbackRef, checkout);
      const info = await readCommitInfo(await this.source(project, true), checkout).catch(() => null);
      // As the top .git (never sent): the submodules' `.git` files, which point into it.
      for (const sub of submodules) {
        await rm(join(checkout, sub, '.git'), { force: true, recursive: true });
      }
      // The context directory and the Dockerfile must stay inside the checkout, symlinks too:
      // resolved component by component, a link out of the repository is an error naming the
      // project's path only (never what the link points at on this host).
      const contextDir = await resolveBeneath(checkout, project.context, {
        symlinks: 'refuse-escape',
        what: 'context directory',
      });
      if ((await lstat(contextDir).catch(() => null))?.isDirectory() !== true) {
        throw new StratumError('CONTEXT_MISSING', `the repository has no directory "${project.context}"`);
      }
      const dockerfile = posix.normalize(project.dockerfile).replace(/^(\.\/)+/, '');
      const dfPath = await resolveBeneath(contextDir, dockerfile, {
        symlinks: 'refuse-escape',
        what: 'Dockerfile path',
      });
      if ((await lstat(dfPath).catch(() => null))?.isFile() !== true) {
        throw new StratumError(
          'DOCKERFILE_MISSING',
          `the commit has no Dockerfile at "${posix.join(project.context, dockerfile)}"`,
        );
      }
      const files = await planContextFiles(contextDir, dockerfile);
      const put = await this.blobs.put(tarContextFiles(contextDir, files), {
        maxBytes: this.config.maxContextBytes,
      });
      const builds = this.moduleRef.get(BuildsService, { strict: false });
      const secretsId = await this.projectSecretsFor(project, trusted);
      try {
        const submitted = await builds.submitStored(
          put.digest,
          put.size,
          {
            t: tags,
            dockerfile,
            buildargs: project.buildArgs,
            target: project.target ?? undefined,
            nocache: false,
            // git-triggered builds get the service's default network
            network: undefined,
            platform: undefined,
            push: tags.some((t) => parseReference(t).registry !== null),
            ...(secretsId !== undefined ? { secrets: secretsId } : {}),
          },
          { ...buildSource, author: info?.author ?? null, message: info?.message ?? null },
        );
        return submitted.id;
      } catch (err) {
        if (secretsId !== undefined) {
          await this.secrets.dropBundle(secretsId).catch(() => undefined);
        }
        if (put.created) {
          await this.blobs.delete(put.digest).catch(() => undefined);
        }
        throw err;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
