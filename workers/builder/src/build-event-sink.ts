import { BuildReporter } from '@stratum/build';
import { StepRecord } from '@stratum/contracts';
import { BuildRecordStore } from '@stratum/jobs';

/**
 * The engine's reporter, writing to the build's record and event stream in Redis. Appends go
 * out one after another so the stream keeps the order the engine reported in.
 */
export class BuildEventSink implements BuildReporter {
  private chain: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;

  constructor(
    private readonly records: BuildRecordStore,
    private readonly buildId: string,
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
    void this.enqueue(() => this.records.appendEvent(this.buildId, { type: 'log', step, stream, text }));
  }

  step(step: StepRecord): Promise<void> {
    const copy = { ...step };
    return this.enqueue(() => this.records.recordStep(this.buildId, copy));
  }

  /** Waits until everything reported so far is in Redis; throws the first write failure. */
  async flush(): Promise<void> {
    await this.chain;
    if (this.failure !== null) {
      throw this.failure;
    }
  }
}
