import { formatPlatform, HistoryEntry, ImageConfig, Platform } from '@stratum/oci';
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

/**
 * An empty image for `platform` (default linux/amd64). Its cache key names the platform (other
 * than linux/amd64, whose key stays `scratch`): a scratch stage's steps are keyed per platform.
 */
export function scratchState(platform: Platform = { os: 'linux', architecture: 'amd64' }): ImageState {
  const name = formatPlatform(platform);
  return {
    cacheKey: name === 'linux/amd64' ? 'scratch' : `scratch:${name}`,
    layers: [],
    config: {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
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

/** Position of each key in an Env list this module changed last (kept to avoid O(n) scans). */
const envPositions = new WeakMap<string[], Map<string, number>>();

/**
 * Sets variables in a `KEY=VALUE` list in place, keeping the order of existing keys (Docker's
 * behaviour); returns the list. A stage owns its config (cloned from its base), so changing
 * it in place is safe, and each ENV costs its own pairs, not the whole list again.
 */
export function setEnv(env: string[], pairs: readonly { key: string; value: string }[]): string[] {
  let positions = envPositions.get(env);
  if (positions === undefined) {
    positions = new Map();
    env.forEach((e, i) => positions?.set(e.slice(0, e.indexOf('=')), i));
    envPositions.set(env, positions);
  }
  for (const { key, value } of pairs) {
    const i = positions.get(key);
    if (i !== undefined) {
      env[i] = `${key}=${value}`;
    } else {
      positions.set(key, env.length);
      env.push(`${key}=${value}`);
    }
  }
  return env;
}

/** Appends a history entry in place (copying the list per step was O(n²) over a stage). */
export function addHistory(state: ImageState, entry: HistoryEntry): void {
  (state.config.history ??= []).push(entry);
}
