import { BuildRecord, BuildState, StepStatus } from '@stratum/contracts';

/** One UTC day of finished builds: how many, how they ended, how long they took, cache use. */
export interface BuildDayStats {
  /** `YYYY-MM-DD` (UTC). */
  readonly day: string;
  readonly builds: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly cancelled: number;
  /** Median and 95th percentile of the run time (started -> finished), ms; null without builds. */
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  /** Cached steps / all steps of the day's builds (0..1); null without steps. */
  readonly cacheHitRate: number | null;
}

/** `GET /api/v1/builds/stats`: the last `days` UTC days, oldest first (days without builds included). */
export interface BuildStats {
  readonly project: string | null;
  readonly days: readonly BuildDayStats[];
  /** Builds looked at (finished ones in the window; capped, see the store's scan limit). */
  readonly sampled: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const FINISHED = new Set<BuildState>([BuildState.Succeeded, BuildState.Failed, BuildState.Cancelled]);

/** Nearest-rank percentile of sorted values (p in 0..100), as most dashboards compute it. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) {
    return null;
  }
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * Duration trends and cache hit rates per UTC day from build records: finished builds only,
 * each counted on the day it was created; `now` bounds the window (the last `days` days,
 * today included).
 */
export function buildStats(
  records: readonly BuildRecord[],
  options: { readonly days: number; readonly now: Date; readonly project?: string },
): BuildStats {
  const today = Date.UTC(options.now.getUTCFullYear(), options.now.getUTCMonth(), options.now.getUTCDate());
  const first = today - (options.days - 1) * DAY_MS;
  const byDay = new Map<number, BuildRecord[]>();
  let sampled = 0;
  for (const r of records) {
    const created = Date.parse(r.createdAt);
    if (!FINISHED.has(r.state) || Number.isNaN(created) || created < first || created >= today + DAY_MS) {
      continue;
    }
    if (options.project !== undefined && r.source?.project !== options.project) {
      continue;
    }
    const day = first + Math.floor((created - first) / DAY_MS) * DAY_MS;
    const list = byDay.get(day) ?? [];
    list.push(r);
    byDay.set(day, list);
    sampled++;
  }
  const days: BuildDayStats[] = [];
  for (let day = first; day <= today; day += DAY_MS) {
    const list = byDay.get(day) ?? [];
    const durations = list
      .map((r) =>
        r.startedAt !== null && r.finishedAt !== null
          ? Date.parse(r.finishedAt) - Date.parse(r.startedAt)
          : NaN,
      )
      .filter((d) => Number.isFinite(d) && d >= 0)
      .sort((a, b) => a - b);
    const steps = list.flatMap((r) => r.steps);
    const cached = steps.filter((s) => s.status === StepStatus.Cached).length;
    days.push({
      day: new Date(day).toISOString().slice(0, 10),
      builds: list.length,
      succeeded: list.filter((r) => r.state === BuildState.Succeeded).length,
      failed: list.filter((r) => r.state === BuildState.Failed).length,
      cancelled: list.filter((r) => r.state === BuildState.Cancelled).length,
      p50Ms: percentile(durations, 50),
      p95Ms: percentile(durations, 95),
      cacheHitRate: steps.length === 0 ? null : cached / steps.length,
    });
  }
  return { project: options.project ?? null, days, sampled };
}
