import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { planContextFiles } from '@stratum/dockerfile';
import { ApiClient, ApiError } from './api-client';
import { tarContext } from './context-tar';

/**
 * True for a `--build-context` value buildx passes on as it is (the server reads it): an image
 * (`docker-image://`), a git URL (BuildKit's forms), any http(s) URL (a tarball), and the
 * forms the server refuses with a reason (`oci-layout://`, `target:`). Anything else is a
 * local directory.
 */
function isRemoteValue(value: string): boolean {
  return /^(docker-image:\/\/|oci-layout:\/\/|target:|git@|ssh:\/\/|git:\/\/|github\.com\/|https?:\/\/|file:\/\/)/i.test(
    value,
  );
}

/**
 * `--build-context name=value` (repeatable), as `docker buildx build --build-context`
 * (https://docs.docker.com/reference/cli/docker/buildx/build/#build-context): a directory is
 * tarred (honouring its own `.dockerignore`) and sent to `POST /api/v1/builds/contexts`, and
 * named by the digest the server answers; the other forms go to the server as written.
 */
export async function buildContexts(
  api: ApiClient,
  specs: readonly string[],
  cwd: string,
  log: (s: string) => void,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) {
      throw new ApiError(0, 'BAD_REQUEST', `--build-context must be name=value, got "${spec}"`);
    }
    const name = spec.slice(0, eq).trim();
    const value = spec.slice(eq + 1).trim();
    if (name in out) {
      throw new ApiError(0, 'BAD_REQUEST', `--build-context ${name} is given twice`);
    }
    if (isRemoteValue(value)) {
      out[name] = value;
      continue;
    }
    const dir = resolve(cwd, value);
    const st = await stat(dir).catch(() => null);
    if (st === null || !st.isDirectory()) {
      throw new ApiError(0, 'BAD_REQUEST', `--build-context ${name}=${value}: not a directory`);
    }
    const files = await planContextFiles(dir, '', { skipGitDir: false, ignoreFile: 'follow' });
    const { stream } = await tarContext(dir, { files, dockerfile: '', extraDockerfile: null });
    const stored = await api.putBuildContext(stream);
    log(`=> named context ${name}: ${value} (${files.length} entries, ${stored.digest})\n`);
    out[name] = stored.digest;
  }
  return out;
}
