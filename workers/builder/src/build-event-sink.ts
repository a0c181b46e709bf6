import { BuildReporter } from '@stratum/engine';
import { StepRecord } from '@stratum/contracts';
import { BuildRecordStore } from '@stratum/jobs';

/**
 * The engine's reporter, writing to the build's record and event stream in Redis. Writes go
 * out one after another so the stream keeps the order the engine reported in. Step changes
 * reported back to back (nothing else reported between them) while an earlier write is in
 * flight are coalesced into one record update ({@link BuildRecordStore.recordSteps}), which
 * appends their events in the same order; the record ends the same as with one write each.
 */
export class BuildEventSink implements BuildReporter {
  private chain: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;
  /** Steps of the last queued write, while it has not started: later steps may join it. */
  private openBatch: StepRecord[] | null = null;

  constructor(
    private readonly records: BuildRecordStore,
    private readonly buildId: string,
    /** WORKER_ID stamped on every step record this sink writes. */
    private readonly worker?: string,
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
    void this.enqueue(() => {
      if (this.openBatch === batch) {
        this.openBatch = null;
      }
      return this.records.recordSteps(this.buildId, batch);
    });
    return Promise.resolve();
  }

  /** Waits until everything reported so far is in Redis; throws the first write failure. */
  async flush(): Promise<void> {
    await this.chain;
    if (this.failure !== null) {
      throw this.failure;
    }
  }
}
