import { BuildEvent, StepRecord } from '@stratum/contracts';
import { ProgressPrinter } from './progress';

function render(events: BuildEvent[]): string {
  let out = '';
  const p = new ProgressPrinter((t) => {
    out += t;
  });
  events.forEach((e) => p.print(e));
  return out;
}

const step = (over: Partial<StepRecord>): StepRecord => ({
  index: 1,
  name: 'RUN make',
  status: 'running',
  startedAt: null,
  finishedAt: null,
  durationMs: null,
  layerSize: null,
  ...over,
});

describe('ProgressPrinter', () => {
  it('prints state changes', () => {
    expect(render([{ type: 'state', state: 'running', at: 'x' }])).toBe('=> build running\n');
  });

  it('prints a running step as `#N [N] name` (1-based)', () => {
    expect(render([{ type: 'step', step: step({ index: 0, name: 'FROM scratch' }) }])).toBe(
      '#1 [1] FROM scratch\n',
    );
  });

  it('prints a step once per status: the update sent when its layer is stored adds no second DONE', () => {
    expect(
      render([
        { type: 'step', step: step({ index: 4 }) },
        { type: 'step', step: step({ index: 4, status: 'done', durationMs: 200 }) },
        { type: 'step', step: step({ index: 5, name: 'RUN next' }) },
        { type: 'step', step: step({ index: 4, status: 'done', durationMs: 200, layerSize: 512 }) },
        { type: 'step', step: step({ index: 5, name: 'RUN next', status: 'done', durationMs: 100 }) },
      ]),
    ).toBe('#5 [5] RUN make\n#5 DONE 0.2s\n#6 [6] RUN next\n#6 DONE 0.1s\n');
  });

  it('prints DONE with the duration in seconds, one decimal', () => {
    expect(render([{ type: 'step', step: step({ status: 'done', durationMs: 1234 }) }])).toBe(
      '#2 DONE 1.2s\n',
    );
  });

  it('prints cached, failed, cancelled and nothing for pending', () => {
    expect(render([{ type: 'step', step: step({ status: 'cached' }) }])).toBe('#2 [2] RUN make\n#2 CACHED\n');
    expect(render([{ type: 'step', step: step({ status: 'failed', durationMs: 50 }) }])).toBe(
      '#2 ERROR after 0.1s\n',
    );
    expect(render([{ type: 'step', step: step({ status: 'cancelled' }) }])).toBe('#2 CANCELED\n');
    expect(render([{ type: 'step', step: step({ status: 'pending' }) }])).toBe('');
  });

  it('prefixes every line of a step log with the step number', () => {
    expect(render([{ type: 'log', step: 2, stream: 'stdout', text: 'a\nb\n' }])).toBe('#3 a\n#3 b\n');
  });

  it('keeps partial writes of a step on one line until the line ends', () => {
    expect(
      render([
        { type: 'log', step: 1, stream: 'stdout', text: 'W' },
        { type: 'log', step: 0, stream: 'stdout', text: 'other\n' },
        { type: 'log', step: 1, stream: 'stdout', text: ': Failed to fetch\nnext' },
        { type: 'log', step: 1, stream: 'stdout', text: ' line\n' },
      ]),
    ).toBe('#1 other\n#2 W: Failed to fetch\n#2 next line\n');
  });

  it('prints a held partial line when its step ends, before the DONE line', () => {
    expect(
      render([
        { type: 'log', step: 1, stream: 'stderr', text: 'no newline' },
        { type: 'step', step: step({ status: 'done', durationMs: 100 }) },
      ]),
    ).toBe('#2 no newline\n#2 DONE 0.1s\n');
  });

  it('prints a held partial line at the end of the stream', () => {
    let out = '';
    const p = new ProgressPrinter((t) => {
      out += t;
    });
    p.print({ type: 'log', step: 0, stream: 'stderr', text: 'partial' });
    expect(out).toBe('');
    p.end();
    expect(out).toBe('#1 partial\n');
  });

  it('prints system logs (no step) without a prefix', () => {
    expect(render([{ type: 'log', step: null, stream: 'system', text: 'cancelled\n' }])).toBe('cancelled\n');
  });

  it('prints the result and errors', () => {
    expect(render([{ type: 'result', imageDigest: `sha256:${'a'.repeat(64)}` }])).toBe(
      `=> image sha256:${'a'.repeat(64)}\n`,
    );
    expect(render([{ type: 'error', message: 'Dockerfile:3: exit 3' }])).toBe(
      'ERROR: Dockerfile:3: exit 3\n',
    );
  });
});
