import { NamedContextSource, StratumError } from '@stratum/contracts';
import { GitTransport, parseGitSource, redact } from '@stratum/git';

/** Most named contexts of one build. */
export const MAX_NAMED_CONTEXTS = 32;

/**
 * A named context's name: what `FROM name` or `COPY --from=name` writes (an image name, with
 * registry, path, tag or digest), as buildx accepts them.
 */
const NAME = /^[a-z0-9][a-z0-9._\-/:@]{0,254}$/;

/**
 * Reads `buildcontexts` values (buildx `--build-context name=<value>`; the CLI uploads a
 * directory first and sends its digest): `sha256:<hex>` (an uploaded context), `docker-image://ref`,
 * a git URL (BuildKit's rules, `#ref:subdir`; transports of ADD_GIT_SCHEMES only), an
 * `https://` (or `http://`) URL of a tarball, or `oci-layout://<tar digest>@<root digest>` (an
 * image of the client's OCI layout, uploaded by the CLI as a layout tar).
 */
export function parseNamedContexts(
  raw: Record<string, string>,
  gitTransports: readonly GitTransport[],
): Record<string, NamedContextSource> {
  const entries = Object.entries(raw);
  if (entries.length > MAX_NAMED_CONTEXTS) {
    throw new StratumError(
      'BAD_REQUEST',
      `buildcontexts: ${entries.length} named contexts, at most ${MAX_NAMED_CONTEXTS} are allowed`,
    );
  }
  const out: Record<string, NamedContextSource> = {};
  for (const [name, value] of entries) {
    if (!NAME.test(name)) {
      throw new StratumError(
        'BAD_REQUEST',
        `buildcontexts: "${name}" is not a context name (an image or stage name, lower case)`,
      );
    }
    out[name] = parseOne(name, value.trim(), gitTransports);
  }
  return out;
}

function parseOne(name: string, value: string, gitTransports: readonly GitTransport[]): NamedContextSource {
  const bad = (why: string): StratumError =>
    new StratumError('BAD_REQUEST', `buildcontexts: ${name}=${redact(value)}: ${why}`);
  if (/^sha256:[0-9a-f]{64}$/.test(value)) {
    return { kind: 'local', digest: value as `sha256:${string}` };
  }
  if (value.startsWith('docker-image://')) {
    const ref = value.slice('docker-image://'.length);
    if (!/^[a-z0-9][a-z0-9._\-/:@]{0,254}$/i.test(ref)) {
      throw bad('expected docker-image://<image reference>');
    }
    return { kind: 'image', ref };
  }
  if (value.startsWith('oci-layout://')) {
    const m = /^oci-layout:\/\/(sha256:[0-9a-f]{64})@(sha256:[0-9a-f]{64})$/.exec(value);
    if (m === null) {
      throw bad(
        'an OCI layout is a directory on the client: the CLI uploads the image it names and sends oci-layout://<uploaded tar digest>@<manifest digest> (stratum build --build-context name=oci-layout:///dir[:tag|@digest])',
      );
    }
    return { kind: 'oci-layout', digest: m[1] as `sha256:${string}`, root: m[2] as `sha256:${string}` };
  }
  if (value.startsWith('target:')) {
    throw bad(
      'target: names another target of a bake file (docker buildx bake); Stratum builds one Dockerfile per build and has no bake targets: build that target first and name its image (docker-image://)',
    );
  }
  let git;
  try {
    git = parseGitSource(value);
  } catch (err) {
    throw bad((err as Error).message);
  }
  if (git !== null) {
    if (!gitTransports.includes(git.transport)) {
      throw bad(
        `the ${git.transport} transport is not allowed here (ADD_GIT_SCHEMES=${gitTransports.join(',') || '(none)'})`,
      );
    }
    return { kind: 'git', url: value };
  }
  if (/^https?:\/\//i.test(value)) {
    try {
      new URL(value);
    } catch {
      throw bad('not a valid URL');
    }
    return { kind: 'http', url: value };
  }
  throw bad(
    'expected a directory (uploaded by the CLI: sha256:<digest>), docker-image://<ref>, a git URL or an https:// tarball',
  );
}
