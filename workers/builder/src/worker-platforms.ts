import { BuildReporter } from '@stratum/engine';
import { StepRecord } from '@stratum/contracts';
import { StratumConfig } from '@stratum/config';
import { detectHostPlatforms, servedPlatforms } from '@stratum/runtime';

/** What this worker builds for, found once at boot (fails the boot on a bad WORKER_PLATFORMS). */
export class WorkerPlatforms {
  constructor(
    /** The host's own platform: BUILDPLATFORM, and the target of builds that name none. */
    readonly native: string,
    /** Platforms whose RUN steps the host can run (native and binfmt-emulated). */
    readonly runnable: readonly string[],
    /** Platforms whose build queues this worker serves (WORKER_PLATFORMS, else all runnable). */
    readonly served: readonly string[],
  ) {}

  static async detect(config: StratumConfig): Promise<WorkerPlatforms> {
    const host = await detectHostPlatforms();
    const served = servedPlatforms(host, config.worker.platforms);
    return new WorkerPlatforms(host.native, [host.native, ...host.emulated.keys()], served);
  }
}

/** A multi-platform build's steps of one platform sit this far apart in the build's record. */
export const PLATFORM_STEP_STRIDE = 100_000;

/**
 * One platform's sub-build reporting into the shared build record: its steps numbered after
 * the earlier platforms' (position × {@link PLATFORM_STEP_STRIDE}) and named
 * `[linux/arm64] RUN …`, its system lines prefixed the same way, as buildx prints them.
 */
export class PlatformReporter implements BuildReporter {
  private readonly offset: number;

  constructor(
    private readonly inner: BuildReporter,
    private readonly platform: string,
    position: number,
  ) {
    this.offset = position * PLATFORM_STEP_STRIDE;
  }

  log(step: number | null, stream: 'stdout' | 'stderr' | 'system', text: string): void {
    if (step === null) {
      this.inner.log(null, stream, stream === 'system' ? `[${this.platform}] ${text}` : text);
    } else {
      this.inner.log(step + this.offset, stream, text);
    }
  }

  step(step: StepRecord): Promise<void> {
    return this.inner.step({
      ...step,
      index: step.index + this.offset,
      name: `[${this.platform}] ${step.name}`,
    });
  }
}
