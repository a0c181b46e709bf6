import { Digest, NamedContextSource } from './jobs';

export const BuildState = {
  Queued: 'queued',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Cancelled: 'cancelled',
} as const;
export type BuildState = (typeof BuildState)[keyof typeof BuildState];

export const TERMINAL_BUILD_STATES: readonly BuildState[] = [
  BuildState.Succeeded,
  BuildState.Failed,
  BuildState.Cancelled,
];

export function isTerminalBuildState(state: BuildState): boolean {
  return TERMINAL_BUILD_STATES.includes(state);
}

export const StepStatus = {
  Pending: 'pending',
  Running: 'running',
  Done: 'done',
  Cached: 'cached',
  Failed: 'failed',
  Cancelled: 'cancelled',
} as const;
export type StepStatus = (typeof StepStatus)[keyof typeof StepStatus];

export interface StepRecord {
  readonly index: number;
  /** The instruction as written, e.g. `RUN make`. */
  readonly name: string;
  status: StepStatus;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  /** Compressed size of the layer the step produced, when it produced one. */
  layerSize: number | null;
  /** WORKER_ID of the worker (host) that ran this step (absent on records from before). */
  worker?: string;
}

/** One attempt of a build: which worker (host) ran it, when it started. */
export interface BuildAttempt {
  readonly attempt: number;
  readonly worker: string;
  readonly startedAt: string;
}

/**
 * A build-wide network for RUN steps: `sandbox` (own network namespace, outbound NAT, nothing
 * of the host reachable) or `none` (loopback only). `host` is only for single steps
 * (`RUN --network=host`), and only where the operator allows it.
 */
export type BuildNetwork = 'sandbox' | 'none';

/** What started a build: a branch push, a tag push, a pull/merge request, the schedule, a person, the API. */
export const BuildTrigger = {
  Push: 'push',
  Tag: 'tag',
  Pr: 'pr',
  Cron: 'cron',
  Manual: 'manual',
  Api: 'api',
} as const;
export type BuildTrigger = (typeof BuildTrigger)[keyof typeof BuildTrigger];

/**
 * Where a build came from. A build of a project names the project, the git ref
 * (`refs/heads/main`, `refs/tags/v1.2.3`, `refs/pull/7/head`), the commit and, when known,
 * its author, message (first line) and pull/merge request number; a build sent to the API has
 * trigger `api` and nulls.
 */
export interface BuildSource {
  readonly trigger: BuildTrigger;
  readonly project: string | null;
  readonly ref: string | null;
  readonly sha: string | null;
  readonly author: string | null;
  readonly message: string | null;
  readonly prNumber: number | null;
  /** The commit's page on its forge (derived from the project's repository URL), when known. */
  readonly commitUrl: string | null;
  /** False for a fork's pull request: built without any of the project's secrets. */
  readonly trusted?: boolean;
}

/** What `GET /api/v1/builds/:id` answers. */
export interface BuildRecord {
  readonly id: string;
  state: BuildState;
  readonly contextDigest: Digest;
  readonly contextSize: number;
  readonly dockerfile: string;
  readonly tags: string[];
  readonly buildArgs: Record<string, string>;
  readonly target: string | null;
  readonly noCache: boolean;
  /** The network asked for with the build (`network=`); absent: the service's default. */
  readonly network?: BuildNetwork;
  /** Named build contexts (`buildcontexts=`, CLI `--build-context`); absent: none. */
  readonly namedContexts?: Record<string, NamedContextSource>;
  /** Platforms asked for (`platform=`); absent: the worker's own. Several give an index. */
  readonly platforms?: string[];
  readonly createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  steps: StepRecord[];
  imageDigest: Digest | null;
  /** With `push`: the push job copying the image to the other registries (`GET /api/v1/pushes/:id`). */
  pushId?: string | null;
  error: string | null;
  /** Times the job has been attempted (a crashed worker's job is retried). */
  attempts: number;
  /** WORKER_ID of the worker running (or that last ran) the build; null before it started. */
  worker?: string | null;
  /** Every attempt with its worker, oldest first (absent on records from before). */
  attemptHistory?: BuildAttempt[];
  /** What started it (absent on records written before sources were kept). */
  readonly source?: BuildSource;
}

/**
 * Events on a build's log stream, in order. Sent over SSE with `event: <type>`.
 */
export type BuildEvent =
  | { readonly type: 'state'; readonly state: BuildState; readonly at: string }
  | { readonly type: 'step'; readonly step: StepRecord }
  | {
      readonly type: 'log';
      readonly step: number | null;
      readonly stream: 'stdout' | 'stderr' | 'system';
      readonly text: string;
    }
  | { readonly type: 'result'; readonly imageDigest: Digest }
  | { readonly type: 'error'; readonly message: string };

export type BuildEventType = BuildEvent['type'];

/**
 * A build in a list: the record without its steps (10,000 of them made a page of 200 builds
 * 8.7 MB), with their counts instead. `GET /api/v1/builds/:id` has the steps.
 */
export interface BuildSummary extends Omit<BuildRecord, 'steps'> {
  readonly stepCount: number;
  /** Steps answered from the build cache. */
  readonly cachedSteps: number;
}

/** A page of builds, newest first. */
export interface BuildPage {
  readonly items: BuildSummary[];
  readonly total: number;
  readonly offset: number;
  readonly limit: number;
}
