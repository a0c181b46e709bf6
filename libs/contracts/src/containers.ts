import { Digest } from './jobs';

// Containers as `docker run` / `docker commit` see them: the record the API answers
// `GET /api/v1/containers/:id` with, written by the API (create, remove, commit requests) and
// by the builder worker that runs and commits the container.

export const ContainerState = {
  /** Recorded; its run-container job is queued. */
  Created: 'created',
  Running: 'running',
  /** The command ended (or could not start); the upper dir keeps its changes for a commit. */
  Exited: 'exited',
  /** Deleted by the user; a tombstone kept for a while so GET answers `removed`. */
  Removed: 'removed',
} as const;
export type ContainerState = (typeof ContainerState)[keyof typeof ContainerState];

export const CommitState = {
  Queued: 'queued',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
} as const;
export type CommitState = (typeof CommitState)[keyof typeof CommitState];

/** A commit of a container, kept on the container's record. */
export interface ContainerCommit {
  readonly id: string;
  readonly repository: string;
  readonly tag: string;
  readonly message: string;
  readonly author: string;
  readonly changes: string[];
  state: CommitState;
  imageDigest: Digest | null;
  error: string | null;
  readonly createdAt: string;
  finishedAt: string | null;
}

/**
 * The container's configuration as Docker's `container.Config` holds it: the image's config
 * with the run's overrides applied. A commit starts from this, as `docker commit` does.
 */
export interface ContainerRunConfig {
  readonly Entrypoint: string[];
  readonly Cmd: string[];
  readonly Env: string[];
  readonly WorkingDir: string;
  readonly User: string;
}

/** One entry of `docker diff`: A added, C changed, D deleted. */
export interface ContainerChange {
  readonly kind: 'A' | 'C' | 'D';
  readonly path: string;
}

/** What `GET /api/v1/containers/:id/changes` answers. */
export interface ContainerChanges {
  readonly containerId: string;
  /** Null while the container has not exited (changes are read when it does). */
  readonly changes: ContainerChange[] | null;
  /** True when there were more than the worker keeps (CONTAINER_CHANGES_LIMIT). */
  readonly truncated: boolean;
}

/** The worker keeps at most this many changes of a container on its record. */
export const CONTAINER_CHANGES_LIMIT = 10_000;

export interface ContainerLogs {
  stdout: string;
  stderr: string;
  /** True when older output was dropped to keep each stream within the limit. */
  truncated: boolean;
}

/** What `GET /api/v1/containers/:id` answers. */
export interface ContainerRecord {
  readonly id: string;
  state: ContainerState;
  /** The image as the request named it. */
  readonly image: string;
  /** `repository@manifestDigest`: the exact image resolved at creation. */
  readonly imageRef: string;
  readonly imageDigest: Digest;
  /** The argv run: Entrypoint + Cmd. */
  readonly command: string[];
  readonly config: ContainerRunConfig;
  readonly network: 'sandbox' | 'none' | 'host';
  readonly createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  signal: string | null;
  /** Why the container could not run, when it could not. */
  error: string | null;
  logs: ContainerLogs;
  /**
   * WORKER_ID of the worker whose host holds the container's upper dir, set when it starts
   * running; its commit and remove-container jobs go to that worker's own queue.
   */
  workerId: string | null;
  commits: ContainerCommit[];
  /**
   * Its filesystem changes (`docker diff`), read by the worker when the command exits (the
   * container never runs again, so they stay true); absent on records of older workers.
   */
  changes?: { readonly items: ContainerChange[]; readonly truncated: boolean } | null;
}

/** A container id: 32 lowercase hex digits. */
export const CONTAINER_ID = /^[a-f0-9]{32}$/;

/** A worker as `GET /api/v1/workers` lists it: live, or gone with what it left behind. */
export interface WorkerView {
  readonly id: string;
  readonly live: boolean;
  /** Platforms it builds for (live workers). */
  readonly platforms: string[];
  /** When its heartbeat lapsed or it shut down; null while live. */
  readonly goneSince: string | null;
  /** When commits and removals of its containers stop waiting (goneSince + CONTAINER_WORKER_TIMEOUT_MS). */
  readonly failsAfter: string | null;
  /** Ids of the containers (not removed) whose files are on its host. */
  readonly containers: string[];
  /** Jobs on its own queue (`commit.<id>`) not yet done: waiting, delayed or active. */
  readonly pendingJobs: number;
}

/** `DELETE /api/v1/workers/:id`: what was dropped. */
export interface WorkerRemoved {
  readonly id: string;
  /** Container records marked removed (their files were on the gone host). */
  readonly containers: number;
  /** Jobs dropped with its queue. */
  readonly jobs: number;
}
