import { BuildRecord, BuildState, StepStatus } from '@stratum/contracts';

/** Step statuses that end a step; only those are counted. */
export const FINISHED_STEP_STATUSES = [
  StepStatus.Done,
  StepStatus.Cached,
  StepStatus.Failed,
  StepStatus.Cancelled,
] as const;
export type FinishedStepStatus = (typeof FINISHED_STEP_STATUSES)[number];

export interface StepObservation {
  readonly status: FinishedStepStatus;
  /** null when the step has no recorded duration. */
  readonly seconds: number | null;
}

/** The finished steps of a build, as metrics observe them. */
export function finishedSteps(record: BuildRecord): StepObservation[] {
  const out: StepObservation[] = [];
  for (const step of record.steps) {
    const status = FINISHED_STEP_STATUSES.find((s) => s === step.status);
    if (status !== undefined) {
      out.push({ status, seconds: step.durationMs === null ? null : step.durationMs / 1000 });
    }
  }
  return out;
}

/** What one pass over the retained build records finds. */
export class BuildWindow {
  readonly byState: Record<BuildState, number> = {
    queued: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
  };
  /** Steps answered from the build cache / actually run, over the retained builds. */
  cachedSteps = 0;
  builtSteps = 0;
  /** Running builds per worker (WORKER_ID of the current attempt). */
  readonly runningByWorker = new Map<string, number>();
  /** Attempts that followed an attempt on another worker (a takeover), over the retained builds. */
  takeovers = 0;

  add(record: BuildRecord): void {
    this.byState[record.state] += 1;
    if (record.state === BuildState.Running && record.worker) {
      this.runningByWorker.set(record.worker, (this.runningByWorker.get(record.worker) ?? 0) + 1);
    }
    const history = record.attemptHistory ?? [];
    for (let i = 1; i < history.length; i++) {
      if (history[i].worker !== history[i - 1].worker) {
        this.takeovers += 1;
      }
    }
    for (const step of record.steps) {
      if (step.status === StepStatus.Cached) {
        this.cachedSteps += 1;
      } else if (step.status === StepStatus.Done) {
        this.builtSteps += 1;
      }
    }
  }

  /** cached / (cached + done); NaN (0/0) while no step has finished either way. */
  cacheHitRatio(): number {
    const total = this.cachedSteps + this.builtSteps;
    return total === 0 ? Number.NaN : this.cachedSteps / total;
  }
}
