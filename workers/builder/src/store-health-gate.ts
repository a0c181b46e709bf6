import { Logger } from '@nestjs/common';
import type { Worker } from 'bullmq';
import type { BlobStore } from '@stratum/storage';

/** A digest no blob has: its stat answers "missing" quickly from a store that works. */
const PROBE_DIGEST = `sha256:${'0'.repeat(64)}` as const;

export interface StoreHealthGateOptions {
  /** How often the store is probed (default 2 s). */
  readonly intervalMs?: number;
  /** A probe that takes longer counts as a failure (default 5 s). */
  readonly timeoutMs?: number;
}

/**
 * Stops this worker taking new jobs while object storage does not answer, and starts again
 * when it does (issue 20): without it, every queued build taken during an outage failed its
 * attempt at once (its context cannot be read), and an outage longer than the backoff (~45 s)
 * failed the whole backlog. Running jobs go on and retry as before (BullMQ's local pause with
 * doNotWaitActive). The state is a value others can read ({@link outage}).
 */
export class StoreHealthGate {
  private readonly logger = new Logger('StoreHealth');
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private timer: NodeJS.Timeout | undefined;
  private down: string | null = null;
  private probing = false;

  constructor(
    private readonly blobs: BlobStore,
    private readonly workers: () => readonly Worker[],
    options: StoreHealthGateOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 2000;
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** The outage's error while the store does not answer, else null. */
  get outage(): string | null {
    return this.down;
  }

  start(): void {
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One probe; pauses or resumes the workers on a change. */
  async probe(): Promise<void> {
    if (this.probing) {
      return;
    }
    this.probing = true;
    try {
      const error = await this.check();
      if (error !== null && this.down === null) {
        this.down = error;
        this.logger.warn(`object storage does not answer (${error}): not taking new jobs until it does`);
        for (const w of this.workers()) {
          await w.pause(true);
        }
      } else if (error === null && this.down !== null) {
        this.logger.log(`object storage answers again after the outage (${this.down}): taking jobs`);
        this.down = null;
        for (const w of this.workers()) {
          await w.resume();
        }
      }
    } finally {
      this.probing = false;
    }
  }

  private async check(): Promise<string | null> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.blobs.stat(PROBE_DIGEST),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.timeoutMs} ms`)),
            this.timeoutMs,
          );
        }),
      ]);
      return null;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
    }
  }
}
