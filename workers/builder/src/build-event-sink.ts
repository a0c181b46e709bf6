import { BuildReporter } from '@stratum/engine';
import { StepRecord } from '@stratum/contracts';
import { BuildRecordStore } from '@stratum/jobs';

/**
 * How long a step change waits for more before it is written: the step changes reported in
 * that time go out as one record update and one read by each follower. A cached step takes
 * ~1 ms, so a fully cached build's 17 steps were 17 writes, 17 stream reads in the API and
 * 17 chunks to the CLI; batched, a cached `steps` build took 105-111 ms instead of 115-119
 * (median of 25, the CLI's wall time). A follower sees a change at most this much later.
 */
export const STEP_BATCH_WINDOW_MS = 15;

/**
 * The engine's reporter, writing to the build's record and event stream in Redis. Writes go
 * out one after another so the stream keeps the order the engine reported in. Step changes
 * reported back to back (nothing else reported between them) within {@link STEP_BATCH_WINDOW_MS}
 * of the first, or while an earlier write is in flight, are coalesced into one record update
 * ({@link BuildRecordStore.recordSteps}), which appends their events in the same order; the
 * record ends the same as with one write each. {@link flush} writes a waiting batch at once.
 */
export class BuildEventSink implements BuildReporter {
  private chain: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;
  /** Steps of the last queued write, while it has not started: later steps may join it. */
  private openBatch: StepRecord[] | null = null;
  /** Ends the wait of the batch that waits for more changes (flush calls it). */
  private wake: (() => void) | null = null;

  constructor(
    private readonly records: BuildRecordStore,
    private readonly buildId: string,
    /** WORKER_ID stamped on every step record this sink writes. */
    private readonly worker?: string,
    private readonly windowMs = STEP_BATCH_WINDOW_MS,
  ) {}

  private enqueue(task: () => Promise<unknown>): Promise<void> {
    const next = this.chain.then(task).then(
      () => undefined,
      (err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      },
    );
    this.chain = next;
    return next;
  }

  log(step: number | null, stream: 'stdout' | 'stderr' | 'system', text: string): void {
    this.openBatch = null; // a later step must not be written before this log
    this.wake?.(); // nor can one join the batch before it: that one goes now
    void this.enqueue(() => this.records.appendEvent(this.buildId, { type: 'log', step, stream, text }));
  }

  /**
   * Queues the change and resolves at once (like `log`, failures surface in {@link flush}):
   * the engine's await would otherwise serialise one Redis round trip set per change.
   */
  step(step: StepRecord): Promise<void> {
    const copy = this.worker !== undefined ? { ...step, worker: this.worker } : { ...step };
    if (this.openBatch !== null) {
      this.openBatch.push(copy);
      return Promise.resolve();
    }
    const batch = [copy];
    this.openBatch = batch;
    const gathered = this.windowMs > 0 ? this.window() : null;
    void this.enqueue(async () => {
      await gathered;
      if (this.openBatch === batch) {
        this.openBatch = null;
      }
      return this.records.recordSteps(this.buildId, batch);
    });
    return Promise.resolve();
  }

  /** Resolves after windowMs, or at once when flushed (or when a log closes the batch). */
  private window(): Promise<void> {
    this.wake?.();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.wake === done) {
          this.wake = null;
        }
        resolve();
      };
      const timer = setTimeout(done, this.windowMs);
      this.wake = done;
    });
  }

  /** Waits until everything reported so far is in Redis; throws the first write failure. */
  async flush(): Promise<void> {
    this.wake?.();
    await this.chain;
    if (this.failure !== null) {
      throw this.failure;
    }
  }
}
