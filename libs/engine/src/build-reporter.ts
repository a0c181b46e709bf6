import { StepRecord } from '@stratum/contracts';

/** Where the engine reports progress: step states and output, in order. */
export interface BuildReporter {
  /** Output of a step (or of the build when `step` is null). Fire and forget; order is kept. */
  log(step: number | null, stream: 'stdout' | 'stderr' | 'system', text: string): void;
  /** A step changed state (pending, running, done, cached, failed, cancelled). */
  step(step: StepRecord): Promise<void>;
}
