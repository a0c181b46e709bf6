import { BuildRecord, StepRecord } from '@stratum/contracts';
import { BuildWindow, finishedSteps } from './build-metrics';

function step(index: number, status: StepRecord['status'], durationMs: number | null): StepRecord {
  return {
    index,
    name: `RUN ${index}`,
    status,
    startedAt: null,
    finishedAt: null,
    durationMs,
    layerSize: null,
  };
}

function build(state: BuildRecord['state'], steps: StepRecord[]): BuildRecord {
  return {
    id: `b-${Math.random()}`,
    state,
    contextDigest: `sha256:${'0'.repeat(64)}`,
    contextSize: 1,
    dockerfile: 'Dockerfile',
    tags: [],
    buildArgs: {},
    target: null,
    noCache: false,
    createdAt: new Date(0).toISOString(),
    startedAt: null,
    finishedAt: null,
    steps,
    imageDigest: null,
    error: null,
    attempts: 1,
  };
}

describe('finishedSteps', () => {
  it('keeps finished steps with their duration in seconds and skips pending or running ones', () => {
    const obs = finishedSteps(
      build('failed', [
        step(0, 'cached', 3),
        step(1, 'done', 1500),
        step(2, 'failed', null),
        step(3, 'pending', null),
        step(4, 'running', 20),
      ]),
    );
    expect(obs).toEqual([
      { status: 'cached', seconds: 0.003 },
      { status: 'done', seconds: 1.5 },
      { status: 'failed', seconds: null },
    ]);
  });
});

describe('BuildWindow', () => {
  it('counts builds by state and the cache hit ratio over done and cached steps', () => {
    const w = new BuildWindow();
    expect(Number.isNaN(w.cacheHitRatio())).toBe(true);
    w.add(build('succeeded', [step(0, 'done', 1), step(1, 'done', 1)]));
    w.add(build('succeeded', [step(0, 'cached', 1), step(1, 'cached', 1)]));
    w.add(build('running', [step(0, 'cached', 1), step(1, 'running', null)]));
    w.add(build('queued', []));
    expect(w.byState).toEqual({ queued: 1, running: 1, succeeded: 2, failed: 0, cancelled: 0 });
    expect(w.cachedSteps).toBe(3);
    expect(w.builtSteps).toBe(2);
    expect(w.cacheHitRatio()).toBeCloseTo(0.6);
  });

  it('counts running builds per worker and takeovers (an attempt on another worker than the one before)', () => {
    const w = new BuildWindow();
    const at = new Date(0).toISOString();
    w.add({
      ...build('running', []),
      worker: 'a',
      attemptHistory: [{ attempt: 1, worker: 'a', startedAt: at }],
    });
    w.add({
      ...build('running', []),
      worker: 'b',
      attemptHistory: [
        { attempt: 1, worker: 'a', startedAt: at },
        { attempt: 2, worker: 'b', startedAt: at },
      ],
    });
    w.add({
      ...build('succeeded', []),
      worker: 'a',
      attemptHistory: [
        { attempt: 1, worker: 'a', startedAt: at },
        { attempt: 2, worker: 'a', startedAt: at },
      ],
    });
    expect([...w.runningByWorker]).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    expect(w.takeovers).toBe(1);
  });
});
