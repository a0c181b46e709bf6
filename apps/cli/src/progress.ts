import { BuildEvent } from '@stratum/contracts';

/**
 * Renders build events as BuildKit's plain progress does: `#N <step>`, the step's output
 * prefixed with its number, then `#N DONE 1.2s` or `#N CACHED`.
 */
export class ProgressPrinter {
  constructor(private readonly write: (text: string) => void) {}

  print(event: BuildEvent): void {
    switch (event.type) {
      case 'state':
        this.write(`=> build ${event.state}\n`);
        break;
      case 'step': {
        const s = event.step;
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
        const lines = event.text.replace(/\n$/, '').split('\n');
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
