import { randomBytes } from 'node:crypto';
import { Digest, settledAll } from '@stratum/contracts';
import { ContainerFilesystems, ContainerFs, LayerDescriptor } from '@stratum/images';

/** Prefix of a layer this build made whose blob is not stored yet (never leaves the run). */
const PENDING = 'pending:';
/** Longest an export waits for the next step's container to start (see {@link LayerExports.nudge}). */
export const EXPORT_HOLD_MAX_MS = 150;

interface Export {
  readonly fs: ContainerFs;
  done: Promise<LayerDescriptor>;
  layer: LayerDescriptor | null;
}

/**
 * Pipelined layer export (BuildKit keeps step results as directories and compresses at
 * export; we store each layer as soon as it can be made, beside the build): a step's frozen
 * upper dir stands in for its layer at once — the next step mounts it as a lower dir — while
 * tarring, compressing, hashing and storing it runs in the background, at most `limit` at a
 * time. Placeholders (`pending:` descriptors) live only inside one build run: the image is
 * written, and a step's cache entry recorded, only with the stored layer's descriptor.
 */
export class LayerExports {
  private readonly exports = new Map<string, Export>();
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private failure: Error | null = null;
  /** Opened (and replaced) by {@link nudge}; null once the build's steps are over. */
  private gate: { opened: Promise<void>; open: () => void } | null = newGate();

  constructor(
    private readonly filesystems: ContainerFilesystems,
    private readonly limit: number,
  ) {}

  /**
   * Starts exporting `fs`'s (unmounted) upper dir with `store` and returns the placeholder
   * that stands for its layer until then.
   */
  add(fs: ContainerFs, store: (fs: ContainerFs) => Promise<LayerDescriptor>): LayerDescriptor {
    const id = `${PENDING}${randomBytes(16).toString('hex')}` as Digest;
    const placeholder: LayerDescriptor = { digest: id, diffId: id, size: 0, mediaType: 'pending' };
    this.filesystems.useFrozenLayer(id, fs.upper);
    const entry: Export = {
      fs,
      layer: null,
      done: this.held().then(() =>
        this.slot(async () => {
          const layer = await store(fs);
          entry.layer = layer;
          return layer;
        }),
      ),
    };
    this.watch(entry.done);
    this.exports.set(id, entry);
    return placeholder;
  }

  /**
   * The next step's container has started: exports waiting for it may start. A new export
   * waits for that (at most {@link EXPORT_HOLD_MAX_MS}), so that the next step's setup — its
   * mounts, bundle and network, a few helper round trips — is not queued behind the export's
   * tar walk on this thread: measured on the steps workload, the first RUN's container
   * started 121-213 ms after the ADD step ended while the ADD's 2 MB layer was being tarred,
   * against ~38 ms between later RUNs.
   */
  nudge(): void {
    this.gate?.open();
    if (this.gate !== null) {
      this.gate = newGate();
    }
  }

  /** The steps are over: every export may start at once. */
  private openForGood(): void {
    this.gate?.open();
    this.gate = null;
  }

  /** Resolves at the next {@link nudge}, after EXPORT_HOLD_MAX_MS, or at once after the steps. */
  private async held(): Promise<void> {
    if (this.gate === null) {
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.gate.opened,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, EXPORT_HOLD_MAX_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /** True for a placeholder of {@link add}. */
  isPending(layer: LayerDescriptor): boolean {
    return this.exports.has(layer.digest);
  }

  /**
   * Runs `fn` with the stored layer once `layer` is stored (at once for a layer that is not a
   * placeholder); {@link finish} waits for it too.
   */
  async after(layer: LayerDescriptor, fn: (stored: LayerDescriptor) => Promise<void>): Promise<void> {
    const entry = this.exports.get(layer.digest);
    if (entry === undefined) {
      return fn(layer);
    }
    entry.done = entry.done.then(async (stored) => {
      await fn(stored);
      return stored;
    });
    this.watch(entry.done);
  }

  /** A failure is kept for the next check(); the rejection itself is handled here. */
  private watch(p: Promise<unknown>): void {
    p.catch((err: unknown) => {
      this.failure ??= err instanceof Error ? err : new Error(String(err));
    });
  }

  /** Throws the first export's failure, if one failed (checked before each step). */
  check(): void {
    if (this.failure !== null) {
      throw this.failure;
    }
  }

  /** `layers` with every placeholder replaced by its stored layer (waits for those). */
  async resolve(layers: readonly LayerDescriptor[]): Promise<LayerDescriptor[]> {
    this.openForGood();
    return Promise.all(
      layers.map(async (l) => {
        const entry = this.exports.get(l.digest);
        return entry === undefined ? l : entry.done;
      }),
    );
  }

  /** Waits for every export (of every stage); throws the first failure. */
  async settle(): Promise<void> {
    this.openForGood();
    await Promise.allSettled([...this.exports.values()].map((e) => e.done));
    this.check();
  }

  /**
   * Waits for every export, then hands each frozen dir to the host's layer cache (the build's
   * mounts are gone by then, so nothing uses them as lower dirs), all side by side: a rename
   * and a small file each. Throws the first failure.
   */
  async finish(adopt: (fs: ContainerFs, layer: LayerDescriptor) => Promise<void>): Promise<void> {
    await this.settle();
    try {
      await settledAll(
        [...this.exports].map(async ([id, e]) => {
          if (e.layer !== null) {
            await adopt(e.fs, e.layer);
          }
          this.filesystems.forgetFrozenLayer(id);
        }),
      );
    } finally {
      this.exports.clear();
    }
  }

  /** Waits for whatever is still running (a failed or cancelled build), ignoring its outcome. */
  async drain(): Promise<void> {
    this.openForGood();
    await Promise.allSettled([...this.exports.values()].map((e) => e.done));
  }

  private async slot<T>(work: () => Promise<T>): Promise<T> {
    while (this.running >= this.limit) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running++;
    try {
      return await work();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

function newGate(): { opened: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}
