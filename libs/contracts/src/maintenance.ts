// Scheduled maintenance of the API: garbage collection, retention, clean-ups, rebuilds.

export type MaintenanceTask = 'gc' | 'fsck' | 'rebuild';

/** What one maintenance run freed, as `GET /api/v1/maintenance/runs` lists it. */
export interface MaintenanceRun {
  readonly id: string;
  readonly task: MaintenanceTask;
  readonly trigger: 'schedule' | 'manual';
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly status: 'succeeded' | 'failed';
  readonly error: string | null;
  /** Counts per kind of thing removed (blobs, bytes, tags, manifests, uploads, containers…). */
  readonly freed: Record<string, number>;
  /** Counts that explain the run (blobs marked, skipped as too young…). */
  readonly stats: Record<string, number>;
  /** Task-specific notes (a rebuild's project and build id). */
  readonly detail?: Record<string, string>;
}
