import { BuildRecord, BuildState, StepRecord, StepStatus } from '@stratum/contracts';
import { buildStats, percentile } from './build-stats';

const step = (index: number, status: StepStatus): StepRecord => ({
  index,
  name: `[stage-0] RUN ${index}`,
  status,
  startedAt: null,
  finishedAt: null,
  durationMs: null,
  layerSize: null,
});

/** A finished build created at `created`, running `ms`, with `cached` of `steps` steps cached. */
function record(
  created: string,
  ms: number,
  state: BuildState,
  steps = 4,
  cached = 0,
  project?: string,
): BuildRecord {
  const start = Date.parse(created) + 1000;
  return {
    id: `${created}-${ms}`,
    state,
    createdAt: created,
    startedAt: new Date(start).toISOString(),
    finishedAt: new Date(start + ms).toISOString(),
    steps: Array.from({ length: steps }, (_, i) => step(i, i < cached ? StepStatus.Cached : StepStatus.Done)),
    ...(project !== undefined ? { source: { trigger: 'push', project } } : {}),
  } as unknown as BuildRecord;
}

describe('percentile (nearest rank)', () => {
  it('gives the median and the 95th of sorted values, null for none', () => {
    const v = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(percentile(v, 50)).toBe(10);
    expect(percentile(v, 95)).toBe(19);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([], 50)).toBeNull();
  });
});

describe('buildStats', () => {
  const now = new Date('2026-12-04T15:00:00Z');

  it('groups finished builds by UTC creation day over the window, oldest first, empty days included', () => {
    const records = [
      record('2026-12-04T01:00:00Z', 10_000, BuildState.Succeeded, 4, 4),
      record('2026-12-04T02:00:00Z', 30_000, BuildState.Failed, 4, 0),
      record('2026-12-04T03:00:00Z', 20_000, BuildState.Succeeded, 4, 2),
      record('2026-12-02T23:59:59Z', 5_000, BuildState.Cancelled, 2, 1),
      // outside the window, or not finished: left out
      record('2026-11-30T12:00:00Z', 1_000, BuildState.Succeeded),
      { ...record('2026-12-04T04:00:00Z', 1, BuildState.Succeeded), state: BuildState.Running },
    ];
    const s = buildStats(records, { days: 3, now });
    expect(s.days.map((d) => d.day)).toEqual(['2026-12-02', '2026-12-03', '2026-12-04']);
    expect(s.sampled).toBe(4);
    const [d2, d3, d4] = s.days;
    expect(d2).toMatchObject({ builds: 1, cancelled: 1, p50Ms: 5000, p95Ms: 5000, cacheHitRate: 0.5 });
    expect(d3).toEqual({
      day: '2026-12-03',
      builds: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      p50Ms: null,
      p95Ms: null,
      cacheHitRate: null,
    });
    expect(d4).toMatchObject({ builds: 3, succeeded: 2, failed: 1, p50Ms: 20_000, p95Ms: 30_000 });
    expect(d4.cacheHitRate).toBeCloseTo(6 / 12);
  });

  it('keeps only the project asked for', () => {
    const records = [
      record('2026-12-04T01:00:00Z', 1000, BuildState.Succeeded, 1, 0, 'web'),
      record('2026-12-04T02:00:00Z', 9000, BuildState.Succeeded, 1, 0, 'api'),
    ];
    const s = buildStats(records, { days: 1, now, project: 'web' });
    expect(s.project).toBe('web');
    expect(s.days[0]).toMatchObject({ builds: 1, p50Ms: 1000 });
  });
});
