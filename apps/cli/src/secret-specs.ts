// `--secret` and `--ssh` as docker build takes them (stratum build, stratum projects secrets set).
import { readFileSync, statSync } from 'node:fs';
import { ApiError } from './api-client';

/** Largest secret value, as BuildKit's (the server refuses larger ones too). */
const MAX_SECRET_BYTES = 500 * 1024;

/**
 * `--secret` values as docker build takes them: `id=npmrc,src=$HOME/.npmrc` (a file),
 * `id=tok,env=TOKEN` (a variable of this environment), `id=TOKEN` alone (the variable of that name).
 */
export function parseSecrets(
  specs: string[],
  environment: Readonly<Record<string, string | undefined>>,
): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const spec of specs) {
    const fields = new Map<string, string>();
    for (const part of spec.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) {
        throw new ApiError(
          0,
          'BAD_REQUEST',
          `--secret: expected key=value fields, got "${part}" in "${spec}"`,
        );
      }
      const key = part.slice(0, eq).trim().toLowerCase();
      if (!['id', 'src', 'source', 'env', 'type'].includes(key)) {
        throw new ApiError(0, 'BAD_REQUEST', `--secret: unknown field "${key}" in "${spec}"`);
      }
      fields.set(key === 'source' ? 'src' : key, part.slice(eq + 1));
    }
    const id = fields.get('id');
    if (id === undefined || id === '') {
      throw new ApiError(0, 'BAD_REQUEST', `--secret: id= is required in "${spec}"`);
    }
    const src = fields.get('src');
    const envName = fields.get('env') ?? (src === undefined ? id : undefined);
    let value: Buffer;
    if (src !== undefined && fields.get('type') !== 'env') {
      let st;
      try {
        st = statSync(src);
      } catch {
        throw new ApiError(0, 'BAD_REQUEST', `--secret ${id}: cannot read ${src}`);
      }
      if (st.size > MAX_SECRET_BYTES) {
        throw new ApiError(
          0,
          'BAD_REQUEST',
          `--secret ${id}: ${src} is larger than ${MAX_SECRET_BYTES} bytes`,
        );
      }
      value = readFileSync(src);
    } else {
      const v = envName === undefined ? undefined : environment[envName];
      if (v === undefined) {
        throw new ApiError(
          0,
          'BAD_REQUEST',
          `--secret ${id}: the environment variable ${envName ?? id} is not set`,
        );
      }
      value = Buffer.from(v);
    }
    out.set(id, value);
  }
  return out;
}

/** Largest private key file `--ssh` reads (the server refuses larger ones too). */
const MAX_SSH_KEY_BYTES = 64 * 1024;

/**
 * Why `--ssh default` alone (docker's "forward my agent") cannot work here: the build runs on a
 * worker, not beside this CLI, and an agent signs but never hands out its private keys.
 */
const NO_AGENT =
  'forwarding a local ssh agent (SSH_AUTH_SOCK) is not supported: the build runs on a worker, and an agent never gives out its keys. An unencrypted copy of a passphrase-protected key: cp KEY K && ssh-keygen -p -N "" -f K';

/**
 * `--ssh` values as `docker buildx build --ssh` takes them with key files: `default=~/.ssh/id_ed25519`,
 * `deploy=key1,key2`. The keys are sent to the server like secrets (this CLI does not forward a
 * local agent, so an id alone or a socket path is refused, saying so).
 */
export function parseSsh(specs: string[]): Map<string, Buffer[]> {
  const out = new Map<string, Buffer[]>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const id = eq < 0 ? spec : spec.slice(0, eq);
    if (id === '') {
      throw new ApiError(0, 'BAD_REQUEST', `--ssh: expected ID=KEYFILE[,KEYFILE], got "${spec}"`);
    }
    const paths =
      eq < 0
        ? []
        : spec
            .slice(eq + 1)
            .split(',')
            .filter((p) => p !== '');
    if (paths.length === 0) {
      throw new ApiError(
        0,
        'BAD_REQUEST',
        `--ssh ${id}: give a private key file (--ssh ${id}=$HOME/.ssh/id_ed25519); ${NO_AGENT}`,
      );
    }
    const keys = paths.map((p) => {
      let st;
      try {
        st = statSync(p);
      } catch {
        throw new ApiError(0, 'BAD_REQUEST', `--ssh ${id}: cannot read ${p}`);
      }
      if (st.isSocket()) {
        throw new ApiError(
          0,
          'BAD_REQUEST',
          `--ssh ${id}: ${p} is an agent socket, give a private key file (--ssh ${id}=$HOME/.ssh/id_ed25519); ${NO_AGENT}`,
        );
      }
      if (!st.isFile() || st.size > MAX_SSH_KEY_BYTES) {
        throw new ApiError(
          0,
          'BAD_REQUEST',
          `--ssh ${id}: ${p} is not a private key file (at most ${MAX_SSH_KEY_BYTES} bytes)`,
        );
      }
      return readFileSync(p);
    });
    out.set(id, [...(out.get(id) ?? []), ...keys]);
  }
  return out;
}
