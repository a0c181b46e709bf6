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
  readCommitInfo,
  redact,
  resolveBranch,
  tarContextFiles,
} from '@stratum/git';
import { parseReference } from '@stratum/oci';
import { BLOB_STORE, BlobStore } from '@stratum/storage';
import { BuildsService } from '../builds/builds.service';
import { ProjectStore, StoredProject } from './project-store';

/** `{branch}` as a tag: the tag grammar's characters only, at most 128 of them. */
function tagSafe(branch: string): string {
  const t = branch.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[.-]+/, '');
  return (t === '' ? 'branch' : t).slice(0, 128);
}

/** The project's tag templates filled in for one commit. */
export function renderTags(
  project: Pick<StoredProject, 'tags' | 'repository'>,
  branch: string,
  sha: string,
): string[] {
  const values: Record<string, string> = {
    repo: project.repository,
    branch: tagSafe(branch),
    sha,
    shortsha: sha.slice(0, 7),
  };
  const tags = project.tags.map((t) =>
    t.replace(/\{(repo|branch|sha|shortsha)\}/g, (_, k: string) => values[k]),
  );
  return [...new Set(tags)];
}

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
  ) {}

  /** Where to fetch from; `short`: with the connect timeout, for calls that only ask the server. */
  private source(project: StoredProject, short = false) {
    const seconds = short ? this.config.git.connectTimeoutSeconds : this.config.git.fetchTimeoutSeconds;
    return {
      url: project.repoUrl,
      credentials: project.credentials,
      timeoutMs: seconds * 1000,
      allowFile: this.config.git.allowFileUrls,
    };
  }

  /** The commit a branch of the project points at now (scheduled and manual builds). */
  async headOf(project: StoredProject, branch: string): Promise<string> {
    const dir = await this.workDir();
    try {
      const sha = await resolveBranch(this.source(project, true), branch, dir);
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
    const tags = renderTags(project, branch, sha);
    let trigger: ProjectTrigger;
    try {
      const buildSource: BuildSource = {
        trigger: origin.trigger ?? TRIGGER_OF_SOURCE[source],
        project: project.name,
        ref: origin.ref ?? `refs/heads/${branch}`,
        sha,
        author: null,
        message: null,
        prNumber: origin.prNumber ?? null,
        commitUrl: commitWebUrl(project.forge ?? null, project.repoUrl, sha),
      };
      const buildId = await this.buildNow(project, branch, sha, tags, buildSource);
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

  private async workDir(): Promise<string> {
    const dir = join(this.config.dataDir, 'git', randomUUID());
    await mkdir(dir, { recursive: true });
    return dir;
  }

  private async buildNow(
    project: StoredProject,
    branch: string,
    sha: string,
    tags: string[],
    buildSource: BuildSource,
  ): Promise<string> {
    const dir = await this.workDir();
    try {
      const checkout = join(dir, 'checkout');
      // The server must answer an ls-remote within the connect timeout before the fetch gets
      // the long one: a silent host or port fails the request in seconds, not minutes.
      await resolveBranch(this.source(project, true), branch, dir);
      await fetchCommit(this.source(project), sha, branch, checkout);
      const info = await readCommitInfo(this.source(project, true), checkout).catch(() => null);
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
            push: tags.some((t) => parseReference(t).registry !== null),
          },
          { ...buildSource, author: info?.author ?? null, message: info?.message ?? null },
        );
        return submitted.id;
      } catch (err) {
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
