import { makeBadge } from 'badge-maker';
import { BuildState } from '@stratum/contracts';

/** Message and colour of each state, as shields.io's build badges say them. */
const LOOK: Readonly<Record<BuildState | 'unknown', { message: string; color: string }>> = {
  queued: { message: 'queued', color: 'lightgrey' },
  running: { message: 'running', color: 'blue' },
  succeeded: { message: 'passing', color: 'brightgreen' },
  failed: { message: 'failing', color: 'red' },
  cancelled: { message: 'cancelled', color: 'inactive' },
  unknown: { message: 'unknown', color: 'lightgrey' },
};

/**
 * A shields-style SVG (badge-maker, the library shields.io itself draws with) saying the state
 * of a branch's latest build; `unknown` when it has none.
 */
export function buildBadgeSvg(state: BuildState | null, label = 'build'): string {
  const look = LOOK[state ?? 'unknown'];
  return makeBadge({ label, message: look.message, color: look.color, style: 'flat' });
}
