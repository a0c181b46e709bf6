import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';

/**
 * Polls `GET /api/v1/builds/:id` until the build is in one of `states`, or the time is up;
 * returns the last record either way (the caller asserts on it, so a timeout shows the state).
 */
export async function pollBuild(
  apiUrl: string,
  id: string,
  states: readonly string[],
  timeoutMs: number,
  intervalMs = 200,
): Promise<BuildRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rec = (await request(apiUrl).get(`/api/v1/builds/${id}`)).body as BuildRecord;
    if (states.includes(rec.state) || Date.now() > deadline) {
      return rec;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Files under a directory, recursively (empty when it does not exist). */
export function filesUnder(dir: string): string[] {
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  for (const n of names) {
    const p = join(dir, n);
    out = statSync(p).isDirectory() ? out.concat(filesUnder(p)) : out.concat(p);
  }
  return out;
}
