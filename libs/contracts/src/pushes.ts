import { Digest } from './jobs';

/** Where a push job is. */
export const PushState = {
  Queued: 'queued',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
} as const;
export type PushState = (typeof PushState)[keyof typeof PushState];

/** One target of a push: `repo:tag` (our registry) or `host[:port]/repo:tag` (another one). */
export interface PushTargetRecord {
  readonly target: string;
  state: PushState;
  /** Blobs sent (uploaded), found there already, mounted from another repository, or linked (ours). */
  blobs: { uploaded: number; exists: number; mounted: number; linked: number };
  error: string | null;
}

/** A push as `GET /api/v1/pushes/:id` shows it (kept in Redis, `stratum:push:<id>`). */
export interface PushRecord {
  readonly id: string;
  state: PushState;
  readonly source: string;
  readonly sourceRepository: string;
  readonly manifestDigest: Digest;
  readonly targets: PushTargetRecord[];
  /** Attempts started so far (BullMQ retries transient failures with backoff). */
  attempts: number;
  error: string | null;
  readonly createdAt: string;
  finishedAt: string | null;
}
