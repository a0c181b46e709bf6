import { ApiClient, Credentials } from './api-client';
import { CredentialStore } from './credentials';
import { ProgressOutput } from './progress-bar';

/** What every command gets: the API client, the credential store, where output goes. */
export interface CliContext {
  readonly client: () => ApiClient;
  /** Null when there is no config dir (no HOME, no XDG_CONFIG_HOME). */
  readonly credentials: () => CredentialStore | null;
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  /** stdout, for progress (a TTY gets bars). */
  readonly progress: ProgressOutput;
}

/** `--format json` or the table (anything else is refused by commander's choices). */
export type OutputFormat = 'table' | 'json';

/** Credentials `stratum login HOST` stored for another registry, to pass on for a push or pull. */
export function registryCredentials(ctx: CliContext, host: string): Credentials | undefined {
  const stored = ctx.credentials()?.get(host) ?? null;
  return stored === null ? undefined : { username: stored.username, password: stored.secret };
}

/** `host[:port]` of a reference naming another registry (`a.b:5000/x/y:t`), else null. */
export function registryOf(ref: string): string | null {
  const slash = ref.indexOf('/');
  if (slash < 0) {
    return null;
  }
  const first = ref.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : null;
}

/** Splits `repo[:tag]` (a `:` after the last `/`), the tag defaulting to latest. */
export function splitTag(ref: string): { repository: string; tag: string } {
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/') && colon > 0) {
    return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  }
  return { repository: ref, tag: 'latest' };
}
