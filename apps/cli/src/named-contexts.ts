import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { planContextFiles } from '@stratum/context';
import { ApiClient, ApiError } from './api-client';
import { tarContext } from './context-tar';
import type * as OciLayout from './oci-layout';

/**
 * True for a `--build-context` value buildx passes on as it is (the server reads it): an image
 * (`docker-image://`), a git URL (BuildKit's forms), any http(s) URL (a tarball), and
 * `target:` (which the server refuses with a reason). `oci-layout://` and anything else are
 * read here.
 */
function isRemoteValue(value: string): boolean {
  return /^(docker-image:\/\/|target:|git@|ssh:\/\/|git:\/\/|github\.com\/|https?:\/\/|file:\/\/)/i.test(
    value,
  );
}

/**
 * `--build-context name=value` (repeatable), as `docker buildx build --build-context`
 * (https://docs.docker.com/reference/cli/docker/buildx/build/#build-context): a directory is
 * tarred (honouring its own `.dockerignore`) and sent to `POST /api/v1/builds/contexts`, and
 * named by the digest the server answers; `oci-layout://dir[:tag|@digest]` sends the same way
 * a layout holding only the image it names (for `platforms`, `--platform`'s list, when given)
 * and is named
 * `oci-layout://<tar digest>@<image digest>`; the other forms go to the server as written.
 */
export async function buildContexts(
  api: ApiClient,
  specs: readonly string[],
  cwd: string,
  log: (s: string) => void,
  platforms?: string,
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
    if (/^oci-layout:\/\//i.test(value)) {
      // Loaded here only: @stratum/oci's schemas cost start-up time other builds do not need.
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- deferred on purpose
      const { parseOciLayoutValue, selectOciLayout } = require('./oci-layout') as typeof OciLayout;
      const ref = parseOciLayoutValue(value, cwd);
      const picked = await selectOciLayout(ref, platforms).catch((err: unknown) => {
        throw err instanceof ApiError
          ? new ApiError(0, err.code, err.message.replace('--build-context ', `--build-context ${name}=`))
          : err;
      });
      const { stream } = await tarContext(ref.dir, {
        files: picked.files,
        dockerfile: '',
        extraDockerfile: null,
      });
      const stored = await api.putBuildContext(stream);
      log(
        `=> named context ${name}: ${value} (image ${picked.root}, ${picked.files.length - 4} blobs, ${picked.bytes} bytes, ${stored.digest})\n`,
      );
      out[name] = `oci-layout://${stored.digest}@${picked.root}`;
      continue;
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
