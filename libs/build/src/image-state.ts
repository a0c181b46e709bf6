import { HistoryEntry, ImageConfig } from '@stratum/oci';
import type { LayerDescriptor } from '@stratum/images';

/** The image a stage has built so far: its layers and config (history included). */
export interface ImageState {
  layers: LayerDescriptor[];
  config: ImageConfig;
  /** Whether this stage set CMD itself (ENTRYPOINT clears only an inherited CMD). */
  cmdSetInStage?: boolean;
  /**
   * Cache key of the last step applied (or the base's identity: `scratch`, `image:<manifest
   * digest>`); the parent of the next step's key.
   */
  cacheKey?: string;
}

export function scratchState(): ImageState {
  return {
    cacheKey: 'scratch',
    layers: [],
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [] },
      history: [],
    },
  };
}

export function cloneState(s: ImageState): ImageState {
  return {
    layers: [...s.layers],
    config: structuredClone(s.config),
    cmdSetInStage: false,
    cacheKey: s.cacheKey,
  };
}

/** `KEY=VALUE` list -> map (first `=` splits; later duplicates win, as Docker does). */
export function envMap(env: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env ?? []) {
    const eq = e.indexOf('=');
    if (eq > 0) {
      out[e.slice(0, eq)] = e.slice(eq + 1);
    }
  }
  return out;
}

/** Sets variables in a `KEY=VALUE` list, keeping the order of existing keys (Docker's behaviour). */
export function setEnv(
  env: readonly string[] | undefined,
  pairs: readonly { key: string; value: string }[],
): string[] {
  const out = [...(env ?? [])];
  for (const { key, value } of pairs) {
    const i = out.findIndex((e) => e.slice(0, e.indexOf('=')) === key);
    if (i >= 0) {
      out[i] = `${key}=${value}`;
    } else {
      out.push(`${key}=${value}`);
    }
  }
  return out;
}

export function addHistory(state: ImageState, entry: HistoryEntry): void {
  state.config.history = [...(state.config.history ?? []), entry];
}
