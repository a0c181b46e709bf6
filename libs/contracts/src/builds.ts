import { Digest } from './jobs';

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
}

/**
 * A build-wide network for RUN steps: `sandbox` (own network namespace, outbound NAT, nothing
 * of the host reachable) or `none` (loopback only). `host` is only for single steps
 * (`RUN --network=host`), and only where the operator allows it.
 */
export type BuildNetwork = 'sandbox' | 'none';

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
