import { BuildEvent } from '@stratum/contracts';

/**
 * Renders build events as BuildKit's plain progress does: `#N <step>`, the step's output
 * prefixed with its number, then `#N DONE 1.2s` or `#N CACHED`.
 *
 * A step's output arrives in whatever pieces its process wrote (`printf W; sleep 1; echo ...`):
 * a piece without a newline is held, per step and stream, until its line ends, the step ends,
 * or {@link end} — so one line of output is one `#N` line, never split.
 */
export class ProgressPrinter {
  /** Unfinished last line of each step's stream, keyed `step:stream`. */
  private readonly partial = new Map<string, string>();
  /** The status last printed for each step: a step's record is sent again when its layer is stored. */
  private readonly printed = new Map<number, string>();

  constructor(private readonly write: (text: string) => void) {}

  /** Prints what is still held (the stream ended). */
  end(): void {
    this.flush(null);
  }

  /** Writes the held partial lines of one step (or of every step for `null`). */
  private flush(step: number | null): void {
    for (const [key, text] of this.partial) {
      const [s] = key.split(':');
      if (step === null || s === String(step)) {
        this.write(`${s === 'null' ? '' : `#${Number(s) + 1} `}${text}\n`);
        this.partial.delete(key);
      }
    }
  }

  print(event: BuildEvent): void {
    if (event.type === 'step') {
      if (event.step.status !== 'running' && event.step.status !== 'pending') {
        this.flush(event.step.index);
      }
    } else if (event.type !== 'log') {
      this.flush(null);
    }
    switch (event.type) {
      case 'state':
        this.write(`=> build ${event.state}\n`);
        break;
      case 'step': {
        const s = event.step;
        if (this.printed.get(s.index) === s.status) {
          break;
        }
        this.printed.set(s.index, s.status);
        const n = `#${s.index + 1}`;
        switch (s.status) {
          case 'running':
            this.write(`${n} [${s.index + 1}] ${s.name}\n`);
            break;
          case 'cached':
            this.write(`${n} [${s.index + 1}] ${s.name}\n${n} CACHED\n`);
            break;
          case 'done':
            this.write(`${n} DONE ${((s.durationMs ?? 0) / 1000).toFixed(1)}s\n`);
            break;
          case 'failed':
            this.write(`${n} ERROR after ${((s.durationMs ?? 0) / 1000).toFixed(1)}s\n`);
            break;
          case 'cancelled':
            this.write(`${n} CANCELED\n`);
            break;
          case 'pending':
            break;
        }
        break;
      }
      case 'log': {
        const prefix = event.step === null ? '' : `#${event.step + 1} `;
        const key = `${event.step}:${event.stream}`;
        const lines = `${this.partial.get(key) ?? ''}${event.text}`.split('\n');
        const rest = lines.pop() as string;
        if (rest === '') {
          this.partial.delete(key);
        } else {
          this.partial.set(key, rest);
        }
        this.write(lines.map((l) => `${prefix}${l}\n`).join(''));
        break;
      }
      case 'result':
        this.write(`=> image ${event.imageDigest}\n`);
        break;
      case 'error':
        this.write(`ERROR: ${event.message}\n`);
        break;
    }
  }
}
