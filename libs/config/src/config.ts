import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { isSafeName } from '@stratum/confine';

/** Raised when the environment does not describe a runnable service; the message lists every problem. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: string[]) {
    super(`Invalid Stratum configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * The environment schemas, built on first use: zod takes ~40 ms to load, and the CLI loads
 * this lib for {@link loadCliConfig} only, so zod is required when a server loads its config.
 */
function buildSchemas() {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deferred on purpose (see above)
  const { z } = require('zod') as typeof import('zod');
  const port = z.coerce.number().int().min(1).max(65535);
  const positiveInt = z.coerce.number().int().positive();
  const bool = z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

  const s3Schema = z.object({
    S3_ENDPOINT: z.url({ message: 'S3_ENDPOINT must be a URL such as http://127.0.0.1:9000' }),
    S3_ACCESS_KEY: z.string().min(1),
    S3_SECRET_KEY: z.string().min(1),
    S3_BUCKET: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'S3_BUCKET must be a valid bucket name'),
    S3_REGION: z.string().min(1).default('us-east-1'),
    // Blob GETs answer 307 to a presigned URL on S3 (Distribution's storage `redirect`), so
    // layer bytes bypass the API. `auto`: on when S3_REDIRECT_ENDPOINT is set, or when
    // S3_ENDPOINT's host is one clients elsewhere can reach (see s3RedirectTarget).
    S3_REDIRECT: z.enum(['off', 'on', 'auto']).default('auto'),
    // The S3 address registry clients reach, when it is not S3_ENDPOINT (which the API uses).
    S3_REDIRECT_ENDPOINT: z
      .url({ message: 'S3_REDIRECT_ENDPOINT must be a URL such as https://s3.example.com' })
      .optional(),
    S3_REDIRECT_SECONDS: z.coerce
      .number()
      .int()
      .min(10)
      .max(7 * 24 * 3600)
      .default(300),
  });

  /**
   * Registry authentication and pushes to / mirrors of other registries. Lists are comma-separated:
   * - REGISTRY_USERS: `user:password`, the password plain or a bcrypt hash (`$2y$…`, as htpasswd -B writes)
   * - API_TOKENS: `name:token` (Bearer on /api/v1 when API_AUTH=true; the password of a registry login)
   * - REPOSITORY_ACCESS: `pattern=public|private` (`*` matches anything), first match wins over ANONYMOUS_PULL
   * - ACCESS_RULES: `subject:pattern=actions` (subject a user, `token:<name>` or `*` for anyone signed in;
   *   actions `pull`, `push`, `delete` joined by `+`): once any is set, a signed-in principal may do on a
   *   repository only what its matching rules grant (plus pull where the repository is public)
   * - IMMUTABLE_TAGS: `repository-pattern:tag-pattern` (`team/*:v*`): such a tag, once set, never moves to
   *   another digest and is never deleted
   * - REPOSITORY_QUOTAS: `repository-pattern=size` (`team-a/*=10GiB`; B, KB/MB/GB/TB, KiB/MiB/GiB/TiB): the
   *   unique blobs (layers, configs, manifests) linked to the repositories a pattern matches, counted
   *   once however many of them hold a blob, never exceed the size; a write past it is refused
   * - REGISTRY_MIRRORS: `prefix=upstream-url` (credentials as URL userinfo), served pull-through at /v2/<prefix>/…
   * - REGISTRY_CREDENTIALS: `host[:port]=user:password` for pushes to, and pulls from, other registries
   * - REGISTRY_INSECURE: `host[:port]` reached over plain HTTP (Docker's `insecure-registries`)
   * - DEFAULT_REGISTRY: where an unqualified FROM (`alpine`, `team/base:1`) is pulled from when our
   *   registry lacks it (Docker Hub by default, as Docker), or `none`
   * - PULL_MIRRORS: `registry=url[,url…]` (more `registry=url` entries may follow): mirrors a FROM pull
   *   tries in order before the registry itself (Docker's `registry-mirrors`, per registry)
   */
  const authSchema = z.object({
    REGISTRY_AUTH: z
      .enum(['none', 'token'], { message: 'REGISTRY_AUTH must be "none" or "token"' })
      .default('none'),
    API_AUTH: bool.default(false),
    AUTH_SECRET: z.string().min(32, 'AUTH_SECRET must be at least 32 characters').optional(),
    AUTH_SERVICE: z.string().min(1).default('stratum'),
    TOKEN_TTL_SECONDS: positiveInt.max(86_400).default(300),
    ANONYMOUS_PULL: bool.default(true),
    REGISTRY_USERS: z.string().optional(),
    API_TOKENS: z.string().optional(),
    REPOSITORY_ACCESS: z.string().optional(),
    ACCESS_RULES: z.string().optional(),
    IMMUTABLE_TAGS: z.string().optional(),
    REPOSITORY_QUOTAS: z.string().optional(),
    // Audit log entries (logins, pushes, deletes, tags, builds…) older than this are dropped.
    AUDIT_RETENTION_DAYS: positiveInt.max(3650).default(90),
    REGISTRY_MIRRORS: z.string().optional(),
    REGISTRY_CREDENTIALS: z.string().optional(),
    REGISTRY_INSECURE: z.string().optional(),
    DEFAULT_REGISTRY: z
      .string()
      .regex(
        /^(none|[A-Za-z0-9.-]+(:[0-9]+)?|\[[0-9A-Fa-f:]+\](:[0-9]+)?)$/,
        'DEFAULT_REGISTRY must be host[:port] (e.g. docker.io) or "none"',
      )
      .default('docker.io'),
    PULL_MIRRORS: z.string().optional(),
    // Password logins (the token endpoint, Basic on /v2/): attempts a user name and a client
    // address each get free (wrong ones and those still being checked); past them each attempt
    // locks out the next for twice as long as the one before (1 s, 2 s, 4 s…, at most
    // LOGIN_BACKOFF_MAX_SECONDS), answered 429 with Retry-After. The counts are in Redis, so every
    // API replica sees them, and are forgotten after LOGIN_BACKOFF_MAX_SECONDS without attempts.
    LOGIN_FREE_ATTEMPTS: positiveInt.max(1000).default(5),
    LOGIN_BACKOFF_MAX_SECONDS: positiveInt.max(86_400).default(900),
    // Threads that run bcrypt, so that a burst of logins never stalls the API's event loop.
    LOGIN_HASH_THREADS: positiveInt.max(16).default(1),
  });

  const baseSchema = z.object({
    REDIS_URL: z
      .string({ message: 'REDIS_URL is required, e.g. redis://127.0.0.1:6390' })
      .regex(/^rediss?:\/\//, 'REDIS_URL must start with redis:// or rediss://'),
    // Redis Sentinel (high availability): comma-separated host:port of the sentinels, and the
    // name of the primary they watch. REDIS_URL then only gives the password and the db.
    REDIS_SENTINELS: z
      .string()
      .regex(
        /^[A-Za-z0-9.:[\]-]+:\d{1,5}(,[A-Za-z0-9.:[\]-]+:\d{1,5})*$/,
        'REDIS_SENTINELS must be host:port[,host:port...]',
      )
      .optional(),
    REDIS_SENTINEL_NAME: z.string().min(1).max(128).default('mymaster'),
    DATA_DIR: z.string().min(1).default('./.data'),
    STORAGE: z.enum(['fs', 's3'], { message: 'STORAGE must be "fs" or "s3"' }).default('fs'),
    RUNTIME: z.string().min(1).default(defaultRuntimePath),
    // Unset: loopback until REGISTRY_AUTH=token and API_AUTH=true, then every interface (see apiHost).
    API_HOST: z.string().min(1).optional(),
    // Listen beyond loopback without our auth: only behind something in front that authenticates.
    ALLOW_UNAUTHENTICATED_NETWORK: bool.default(false),
    API_PORT: port.default(8080),
    // A stopping API waits for open requests (a log stream stays open until its build ends) and
    // for Redis; past this it exits anyway.
    API_SHUTDOWN_TIMEOUT_MS: positiveInt.default(10_000),
    PUBLIC_URL: z.url().optional(),
    // Proxies in front of the API whose X-Forwarded-For is believed (Express's "trust proxy": a
    // hop count, or addresses/subnets/loopback/uniquelocal, comma-separated). Unset, the client
    // address is the socket's: behind a load balancer every login would count against its one
    // address, and a few wrong passwords would lock everyone out.
    TRUST_PROXY: z
      .string()
      .regex(
        /^(\d+|[0-9A-Za-z.:/]+(,[0-9A-Za-z.:/]+)*)$/,
        'TRUST_PROXY must be a hop count or a comma list of addresses/subnets',
      )
      .optional(),
    MAX_CONTEXT_BYTES: positiveInt.default(2 * 1024 * 1024 * 1024),
    // What one ADD may unpack from local archives (tar bytes read): bounds a tar bomb in the context.
    MAX_ADD_UNPACKED_BYTES: positiveInt.default(8 * 1024 * 1024 * 1024),
    // Git sources (`ADD <git url>`, `--build-context name=<git url>`): the transports allowed
    // (an explicit list: `file` reads the worker's own disk and is for tests only), the disk one
    // checkout may take, and how long each git command may run.
    ADD_GIT_SCHEMES: z
      .string()
      .regex(
        /^\s*((https|http|ssh|git|file)\s*(,\s*(https|http|ssh|git|file)\s*)*)?$/,
        'ADD_GIT_SCHEMES must be a comma list of https, http, ssh, git, file',
      )
      .default('https,ssh'),
    ADD_GIT_MAX_BYTES: positiveInt.default(2 * 1024 * 1024 * 1024),
    ADD_GIT_TIMEOUT_SECONDS: positiveInt.max(3600).default(300),
    // known_hosts file (OpenSSH format) of the ssh servers git sources may come from: an ssh
    // host not listed, or whose key differs, is refused. Unset: every ssh git source is refused.
    ADD_GIT_SSH_KNOWN_HOSTS: z.string().min(1).optional(),
    // Entries (files, dirs, links) of a build context: each costs the API and the worker memory
    // (1,000,000 empty files took a worker to 1.87 GB); 500,000 is several times a large
    // monorepo's checkout with node_modules, and keeps a worker well under 1 GB.
    MAX_CONTEXT_ENTRIES: positiveInt.default(500_000),
    BUILD_RETENTION_SECONDS: positiveInt.default(7 * 24 * 3600),
    WORKER_CONCURRENCY: positiveInt.max(64).default(2),
    // Names the worker's scratch dir (<DATA_DIR>/worker/<id>): one path component, never `..`.
    WORKER_ID: z
      .string()
      .refine((v) => isSafeName(v), 'WORKER_ID must be 1-128 of [A-Za-z0-9_.-], not starting with "." or "-"')
      .default(hostname()),
    WORKER_SHUTDOWN_TIMEOUT_MS: positiveInt.default(30_000),
    // Platforms this worker builds for (`linux/amd64,linux/arm64`); absent: every one it can run
    // (native, plus binfmt_misc handlers registered with the F flag). Checked at boot.
    WORKER_PLATFORMS: z
      .string()
      .regex(
        /^[A-Za-z0-9_/]+(,[A-Za-z0-9_/]+)*$/,
        'WORKER_PLATFORMS must be a comma list like linux/amd64,linux/arm64',
      )
      .optional(),
    // How long after a worker dies (or hangs, or loses Redis) its jobs go on elsewhere, at most.
    // The BullMQ lock and stalled-check timings and the liveness heartbeat derive from it
    // (lostWorkerTimings). A smaller value takes over sooner but tolerates shorter pauses of a
    // live worker (about 0.47 of it: an event loop or Redis stall that long is a false takeover).
    WORKER_LOST_MS: positiveInt.min(2000).max(600_000).default(8_000),
    // Expert overrides of the derived BullMQ timings (lockDuration, stalledInterval); their sum
    // is the worst-case detection time and may not exceed WORKER_LOST_MS.
    WORKER_LOCK_DURATION_MS: positiveInt.min(1000).optional(),
    WORKER_STALLED_INTERVAL_MS: positiveInt.min(500).optional(),
    // A commit or removal of a container whose worker (the host holding its files) has been gone
    // this long fails with a message naming the worker, instead of waiting for it forever.
    CONTAINER_WORKER_TIMEOUT_MS: positiveInt.min(1000).default(30_000),
    JOB_ATTEMPTS: positiveInt.max(20).default(5),
    STEP_TIMEOUT_SECONDS: positiveInt.default(3600),
    STEP_MEMORY_BYTES: positiveInt.default(4 * 1024 * 1024 * 1024),
    // What one RUN step may write to its layer (the overlay upper dir, checked every 2 s and
    // when the step ends): past it the step is killed and the build fails, not the disk.
    STEP_DISK_BYTES: positiveInt.default(64 * 1024 * 1024 * 1024),
    STEP_PIDS_LIMIT: positiveInt.default(4096),
    // Layers one build stores at once beside its steps (0: each step waits for its layer).
    LAYER_EXPORT_CONCURRENCY: z.coerce.number().int().min(0).max(16).default(2),
    // Docker-format seccomp profile of RUN steps and containers (made Docker's default or
    // stricter, see libs/runtime/src/seccomp.ts); `unconfined`: no filter.
    SECCOMP_PROFILE: z.string().min(1).default('/usr/share/containers/seccomp.json'),
    // RUN steps in a user namespace: `auto` (on with 100000:65536 when the host can), `off`, or a
    // range `uid:count` / `uid:gid:count` (the worker refuses to start if the host cannot).
    USERNS_REMAP: z
      .string()
      .regex(
        /^(auto|off|\d+:\d+(:\d+)?)$/,
        'USERNS_REMAP must be auto, off, or a uid range like 100000:65536 (uid:count or uid:gid:count)',
      )
      .default('auto'),
    LAYER_CACHE_MAX_BYTES: positiveInt.default(50 * 1024 * 1024 * 1024),
    RUN_CACHE_MAX_BYTES: positiveInt.default(10 * 1024 * 1024 * 1024),
    LOG_LEVEL: z.enum(['error', 'warn', 'log', 'debug', 'verbose']).default('log'),
    PRETTY_LOGS: bool.default(true),
    ALLOW_HOST_NETWORK: bool.default(false),
    // RUN steps' network: `sandbox` (own namespace, outbound NAT, nothing of the host) unless the
    // build or the step asks otherwise; ALLOW_SANDBOX_NETWORK=false turns the sandbox off.
    STEP_NETWORK_DEFAULT: z
      .enum(['sandbox', 'none'], { message: 'STEP_NETWORK_DEFAULT must be "sandbox" or "none"' })
      .optional(),
    ALLOW_SANDBOX_NETWORK: bool.default(true),
    // git triggers (webhooks) and project builds
    WEBHOOK_MAX_BODY_BYTES: positiveInt.default(25 * 1024 * 1024),
    // All webhook bodies being received at once (not yet verified) hold at most this much
    // memory; past it a delivery is answered 503 and the forge retries.
    WEBHOOK_MAX_INFLIGHT_BYTES: positiveInt.default(64 * 1024 * 1024),
    WEBHOOK_REPLAY_TTL_SECONDS: positiveInt.default(7 * 24 * 3600),
    GIT_FETCH_TIMEOUT_SECONDS: positiveInt.default(300),
    // The API's own git calls that hold an HTTP request (ls-remote of a branch, the check that the
    // server answers before a fetch) give up after this long: a URL pointing at a silent port
    // held the request for the whole fetch timeout.
    GIT_CONNECT_TIMEOUT_SECONDS: positiveInt.max(600).default(15),
    /** Outgoing calls (forge commit statuses): attempts, first backoff (doubling), timeout of one call. */
    OUTGOING_ATTEMPTS: positiveInt.max(50).default(15),
    /** Comma-separated http(s) URLs that receive every build and registry event (HMAC-signed with NOTIFY_SECRET). */
    NOTIFY_URLS: z.string().optional(),
    NOTIFY_SECRET: z.string().min(16, 'NOTIFY_SECRET must be at least 16 characters').optional(),
    OUTGOING_BACKOFF_MS: positiveInt.max(3_600_000).default(5000),
    /**
     * Tests only: where the process SIGKILLs itself (`build-record-written:<state>` right after
     * writing a build record in that state, `outbox-relay-claimed:<state>` when the API's outbox
     * relay has read such a record's entry and queued nothing yet), so the chaos suite crashes
     * it at an exact moment.
     */
    TEST_CRASH_POINT: z
      .string()
      .regex(
        /^(build-record-written|outbox-relay-claimed):(queued|running|succeeded|failed|cancelled)$/,
        'TEST_CRASH_POINT must be build-record-written:<state> or outbox-relay-claimed:<state>',
      )
      .optional(),
    OUTGOING_TIMEOUT_MS: positiveInt.max(300_000).default(10_000),
    GIT_ALLOW_FILE_URLS: bool.default(false),
    // maintenance (garbage collection, retention, clean-ups); a cron expression or "off"
    MAINTENANCE_SCHEDULE: z
      .string()
      .regex(
        /^(off|\S+( \S+){4,5})$/,
        'MAINTENANCE_SCHEDULE must be a cron expression (5 or 6 fields) or "off"',
      )
      .default('17 3 * * *'),
    GC_GRACE_SECONDS: positiveInt.default(24 * 3600),
    // fsck: re-hash every stored blob, quarantine mismatches; a cron expression or "off"
    FSCK_SCHEDULE: z
      .string()
      .regex(/^(off|\S+( \S+){4,5})$/, 'FSCK_SCHEDULE must be a cron expression (5 or 6 fields) or "off"')
      .default('43 4 * * 0'),
    RETENTION_KEEP_TAGS: z.coerce.number().int().min(0).default(0),
    RETENTION_UNTAGGED_DAYS: z.coerce.number().int().min(0).default(0),
    RETENTION_REPOSITORIES: z.string().min(1).default('*'),
    CONTAINER_IDLE_SECONDS: positiveInt.default(7 * 24 * 3600),
  });
  return { s3Schema, authSchema, baseSchema };
}

type Schemas = ReturnType<typeof buildSchemas>;
let schemaCache: Schemas | null = null;
function schemas(): Schemas {
  return (schemaCache ??= buildSchemas());
}
type AuthEnv = z.infer<Schemas['authSchema']>;

export interface AuthConfig {
  /** `token`: the Docker token flow guards /v2/ (push always needs a token; pull per `anonymousPull`). */
  readonly registry: 'none' | 'token';
  /** True: /api/v1 needs `Authorization: Bearer <API token>`. */
  readonly api: boolean;
  /** HS256 key of registry tokens; set whenever `registry` is `token` or `api` is true. */
  readonly secret: string | null;
  /** The `service` of the Bearer challenge and the tokens' audience. */
  readonly service: string;
  readonly tokenTtlSeconds: number;
  readonly anonymousPull: boolean;
  readonly repositoryAccess: readonly { readonly pattern: string; readonly access: 'public' | 'private' }[];
  /** ACCESS_RULES; empty: every signed-in principal may pull, push and delete everywhere. */
  readonly accessRules: readonly AccessRule[];
  /** AUDIT_RETENTION_DAYS in seconds. */
  readonly auditRetentionSeconds: number;
  readonly users: readonly { readonly username: string; readonly password: string }[];
  readonly apiTokens: readonly { readonly name: string; readonly token: string }[];
  /** Rate limit and back-off of password logins, and the threads that hash them. */
  readonly login: {
    readonly freeAttempts: number;
    readonly backoffMaxSeconds: number;
    readonly hashThreads: number;
  };
}

export interface RegistryClientConfig {
  readonly mirrors: readonly {
    readonly prefix: string;
    readonly upstream: string;
    readonly username: string | null;
    readonly password: string | null;
  }[];
  readonly credentials: readonly {
    readonly host: string;
    readonly username: string;
    readonly password: string;
  }[];
  readonly insecureHosts: readonly string[];
  /**
   * Registry of unqualified base image names our registry lacks (`docker.io`: Docker Hub, one-word
   * names get `library/`); null: unqualified names mean our registry only.
   */
  readonly defaultRegistry: string | null;
  /** Per registry, the mirrors a FROM pull tries in order before the registry itself (`http(s)://host[:port]`). */
  readonly pullMirrors: readonly { readonly registry: string; readonly urls: readonly string[] }[];
}

function listItems(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function splitOnce(item: string, sep: string): [string, string] | null {
  const i = item.indexOf(sep);
  return i <= 0 || i === item.length - 1 ? null : [item.slice(0, i), item.slice(i + 1)];
}

/** A repository pattern and a tag pattern, `*` matching any run of characters (IMMUTABLE_TAGS). */
export interface ImmutableTagRule {
  readonly repository: string;
  readonly tag: string;
}

function parseImmutableTags(value: string | undefined, problems: string[]): ImmutableTagRule[] {
  return listItems(value).flatMap((item) => {
    const colon = item.lastIndexOf(':');
    const repository = item.slice(0, Math.max(colon, 0));
    const tag = item.slice(colon + 1);
    if (
      colon <= 0 ||
      !/^[a-z0-9*][a-z0-9._/*-]*$/.test(repository) ||
      !/^[A-Za-z0-9_*][A-Za-z0-9._*-]*$/.test(tag)
    ) {
      problems.push(
        `IMMUTABLE_TAGS: "${item}": each entry must be repository-pattern:tag-pattern (e.g. team/*:v*)`,
      );
      return [];
    }
    return [{ repository, tag }];
  });
}

/** The bytes of unique blobs the repositories matching a pattern may hold (REPOSITORY_QUOTAS). */
export interface RepositoryQuota {
  /** Repository name pattern, `*` matching any run of characters (`team-a/*`). */
  readonly pattern: string;
  readonly limitBytes: number;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** `10GiB`, `500MB`, `1024` (bytes) as a byte count, or null. */
export function parseSize(value: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m === null ? undefined : SIZE_UNITS[m[2] === '' ? 'b' : m[2].toLowerCase()];
  if (m === null || unit === undefined) {
    return null;
  }
  const bytes = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

function parseRepositoryQuotas(value: string | undefined, problems: string[]): RepositoryQuota[] {
  const seen = new Set<string>();
  return listItems(value).flatMap((item) => {
    const kv = splitOnce(item, '=');
    const limitBytes = kv === null ? null : parseSize(kv[1]);
    if (kv === null || !/^[a-z0-9*][a-z0-9._/*-]*$/.test(kv[0]) || limitBytes === null) {
      problems.push(
        `REPOSITORY_QUOTAS: "${item}": each entry must be repository-pattern=size, the size in B, KB, MB, GB, TB, KiB, MiB, GiB or TiB (e.g. team-a/*=10GiB)`,
      );
      return [];
    }
    if (seen.has(kv[0])) {
      problems.push(`REPOSITORY_QUOTAS: pattern "${kv[0]}" is given twice`);
      return [];
    }
    seen.add(kv[0]);
    return [{ pattern: kv[0], limitBytes }];
  });
}

/** What a user or token may do on the repositories a pattern matches (ACCESS_RULES). */
export interface AccessRule {
  /** A user name, `token:<name>`, or `*` for anyone signed in. */
  readonly subject: string;
  /** Repository name pattern, `*` matching any run of characters (`team/*`). */
  readonly pattern: string;
  readonly actions: readonly RepositoryAction[];
}

export type RepositoryAction = 'pull' | 'push' | 'delete';
const REPOSITORY_ACTIONS: readonly string[] = ['pull', 'push', 'delete'];

function parseAccessRules(value: string | undefined, problems: string[]): AccessRule[] {
  return listItems(value).flatMap((item) => {
    const eq = item.lastIndexOf('=');
    const colon = eq < 0 ? -1 : item.lastIndexOf(':', eq);
    const actions = eq < 0 ? [] : item.slice(eq + 1).split('+');
    const subject = colon < 0 ? '' : item.slice(0, colon);
    const pattern = colon < 0 ? '' : item.slice(colon + 1, eq);
    if (
      subject === '' ||
      !/^[a-z0-9*][a-z0-9._/*-]*$/.test(pattern) ||
      actions.length === 0 ||
      !actions.every((x) => REPOSITORY_ACTIONS.includes(x))
    ) {
      problems.push(
        `ACCESS_RULES: "${item}": each entry must be subject:pattern=actions, actions pull, push, delete joined by + (e.g. alice:team/*=pull+push)`,
      );
      return [];
    }
    return [{ subject, pattern, actions: actions as RepositoryAction[] }];
  });
}

function parseAuth(a: AuthEnv, problems: string[]): AuthConfig {
  const users = listItems(a.REGISTRY_USERS).flatMap((item) => {
    const kv = splitOnce(item, ':');
    if (kv === null) {
      problems.push('REGISTRY_USERS: each entry must be user:password');
      return [];
    }
    return [{ username: kv[0], password: kv[1] }];
  });
  const apiTokens = listItems(a.API_TOKENS).flatMap((item) => {
    const kv = splitOnce(item, ':');
    if (kv === null || kv[1].length < 16) {
      problems.push('API_TOKENS: each entry must be name:token, the token at least 16 characters');
      return [];
    }
    return [{ name: kv[0], token: kv[1] }];
  });
  const repositoryAccess = listItems(a.REPOSITORY_ACCESS).flatMap((item): AuthConfig['repositoryAccess'] => {
    const kv = splitOnce(item, '=');
    if (kv === null || (kv[1] !== 'public' && kv[1] !== 'private')) {
      problems.push('REPOSITORY_ACCESS: each entry must be pattern=public or pattern=private');
      return [];
    }
    return [{ pattern: kv[0], access: kv[1] }];
  });
  if ((a.REGISTRY_AUTH === 'token' || a.API_AUTH) && a.AUTH_SECRET === undefined) {
    problems.push('AUTH_SECRET: required (at least 32 characters) when REGISTRY_AUTH=token or API_AUTH=true');
  }
  if (a.API_AUTH && apiTokens.length === 0) {
    problems.push('API_TOKENS: at least one token is required when API_AUTH=true');
  }
  return {
    registry: a.REGISTRY_AUTH,
    api: a.API_AUTH,
    secret: a.AUTH_SECRET ?? null,
    service: a.AUTH_SERVICE,
    tokenTtlSeconds: a.TOKEN_TTL_SECONDS,
    anonymousPull: a.ANONYMOUS_PULL,
    repositoryAccess,
    accessRules: parseAccessRules(a.ACCESS_RULES, problems),
    auditRetentionSeconds: a.AUDIT_RETENTION_DAYS * 86_400,
    users,
    apiTokens,
    login: {
      freeAttempts: a.LOGIN_FREE_ATTEMPTS,
      backoffMaxSeconds: a.LOGIN_BACKOFF_MAX_SECONDS,
      hashThreads: a.LOGIN_HASH_THREADS,
    },
  };
}

/** 127.0.0.0/8, ::1 (also as an IPv4-mapped address) and `localhost`. */
/** Internal DNS suffixes: names under them resolve only inside their network or cluster. */
const INTERNAL_SUFFIXES = [
  '.local',
  '.localhost',
  '.internal',
  '.lan',
  '.home.arpa',
  '.svc',
  '.cluster.local',
];

/**
 * Why a client elsewhere may not reach `host` (an S3 endpoint's host), or null when it is a
 * name or address that can be reached from other networks: loopback, unspecified, link-local,
 * private (RFC 1918, CGNAT, IPv6 ULA) addresses, single-label names (`minio`: a compose or
 * cluster service) and internal suffixes (`.svc`, `.cluster.local`, `.internal`, `.local`) are not.
 */
export function unreachableByClients(host: string): string | null {
  const h = host
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase()
    .replace(/\.$/, '');
  if (isLoopbackHost(h) || h.endsWith('.localhost')) {
    return 'a loopback address';
  }
  const v4 = isIP(h) === 4 ? h : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h)?.[1];
  if (v4 !== undefined && isIP(v4) === 4) {
    const [a, b] = v4.split('.').map(Number);
    if (a === 0) {
      return 'an unspecified address';
    }
    if (a === 169 && b === 254) {
      return 'a link-local address';
    }
    if (
      a === 10 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b <= 127)
    ) {
      return 'a private address';
    }
    return null;
  }
  if (isIP(h) === 6) {
    if (/^[0:]+$/.test(h)) {
      return 'an unspecified address';
    }
    if (/^fe[89ab]/.test(h)) {
      return 'a link-local address';
    }
    if (/^f[cd]/.test(h)) {
      return 'a private address';
    }
    return null;
  }
  if (!h.includes('.')) {
    return 'a single-label name (a compose or cluster service name)';
  }
  if (INTERNAL_SUFFIXES.some((s) => h.endsWith(s))) {
    return 'an internal name';
  }
  return null;
}

/**
 * Where blob GETs are redirected (S3_REDIRECT): `off` never; `on` to S3_REDIRECT_ENDPOINT, else
 * S3_ENDPOINT; `auto` (the default) to S3_REDIRECT_ENDPOINT when set, else to S3_ENDPOINT only
 * when {@link unreachableByClients} finds nothing against its host. A redirect a client cannot
 * follow breaks its pull, while serving the bytes through the API is only slower, so `auto`
 * stays off whenever the endpoint may be an address only the API's own network reaches.
 */
export function s3RedirectTarget(
  mode: 'off' | 'on' | 'auto',
  endpoint: string,
  redirectEndpoint: string | null,
): { redirectEndpoint: string | null; redirectReason: string } {
  if (mode === 'off') {
    return { redirectEndpoint: null, redirectReason: 'off (S3_REDIRECT=off)' };
  }
  if (redirectEndpoint !== null) {
    return { redirectEndpoint, redirectReason: `on to ${redirectEndpoint} (S3_REDIRECT_ENDPOINT)` };
  }
  if (mode === 'on') {
    return { redirectEndpoint: endpoint, redirectReason: `on to ${endpoint} (S3_REDIRECT=on)` };
  }
  const why = unreachableByClients(new URL(endpoint).hostname);
  return why === null
    ? {
        redirectEndpoint: endpoint,
        redirectReason: `on to ${endpoint} (S3_REDIRECT=auto: clients can reach its host)`,
      }
    : {
        redirectEndpoint: null,
        redirectReason:
          `off (S3_REDIRECT=auto: S3_ENDPOINT ${endpoint} is ${why}, which clients elsewhere may not reach; ` +
          'set S3_REDIRECT_ENDPOINT to the address they reach, or S3_REDIRECT=on)',
      };
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return (
    h === 'localhost' ||
    h === '::1' ||
    /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    /^0{0,4}(:0{0,4}){6}:0{0,3}1$/.test(h)
  );
}

/**
 * Secure by default: without REGISTRY_AUTH=token and API_AUTH=true anyone who reaches the port
 * may run build steps and push or delete images, so the API then listens on loopback only
 * (API_HOST unset) and refuses to start on another address unless ALLOW_UNAUTHENTICATED_NETWORK
 * says something in front authenticates. With both on, an unset API_HOST means every interface.
 */
function apiHost(
  configured: string | undefined,
  auth: AuthConfig,
  allowUnauthenticated: boolean,
  problems: string[],
): string {
  const authenticated = auth.registry === 'token' && auth.api;
  if (configured === undefined) {
    return authenticated || allowUnauthenticated ? '0.0.0.0' : '127.0.0.1';
  }
  if (!authenticated && !allowUnauthenticated && !isLoopbackHost(configured)) {
    const missing = [
      ...(auth.registry === 'token' ? [] : ['REGISTRY_AUTH=token']),
      ...(auth.api ? [] : ['API_AUTH=true']),
    ].join(' and ');
    problems.push(
      `API_HOST: ${configured} would accept unauthenticated builds, pushes and deletes from the network; ` +
        `set ${missing} (with AUTH_SECRET, API_TOKENS / REGISTRY_USERS), or listen on 127.0.0.1, ` +
        'or set ALLOW_UNAUTHENTICATED_NETWORK=true when a proxy in front authenticates',
    );
  }
  return configured;
}

function parseRegistryClients(a: AuthEnv, problems: string[]): RegistryClientConfig {
  const mirrors = listItems(a.REGISTRY_MIRRORS).flatMap((item) => {
    const kv = splitOnce(item, '=');
    let url: URL | null;
    try {
      url = kv === null ? null : new URL(kv[1]);
    } catch {
      url = null;
    }
    if (
      kv === null ||
      url === null ||
      !/^https?:$/.test(url.protocol) ||
      !/^[a-z0-9]+([._/-][a-z0-9]+)*$/.test(kv[0])
    ) {
      problems.push(
        'REGISTRY_MIRRORS: each entry must be prefix=http(s)://host[:port] with a repository-name prefix',
      );
      return [];
    }
    const username = url.username === '' ? null : decodeURIComponent(url.username);
    const password = url.password === '' ? null : decodeURIComponent(url.password);
    url.username = '';
    url.password = '';
    return [{ prefix: kv[0], upstream: url.toString().replace(/\/+$/, ''), username, password }];
  });
  const credentials = listItems(a.REGISTRY_CREDENTIALS).flatMap((item) => {
    const kv = splitOnce(item, '=');
    const up = kv === null ? null : splitOnce(kv[1], ':');
    if (kv === null || up === null) {
      problems.push('REGISTRY_CREDENTIALS: each entry must be host[:port]=user:password');
      return [];
    }
    return [{ host: kv[0], username: up[0], password: up[1] }];
  });
  return {
    mirrors,
    credentials,
    insecureHosts: listItems(a.REGISTRY_INSECURE),
    defaultRegistry: a.DEFAULT_REGISTRY === 'none' ? null : hubName(a.DEFAULT_REGISTRY),
    pullMirrors: parsePullMirrors(a.PULL_MIRRORS, problems),
  };
}

/** Docker Hub's other names mean `docker.io`, as in image references. */
function hubName(registry: string): string {
  const r = registry.toLowerCase();
  return r === 'index.docker.io' || r === 'registry-1.docker.io' ? 'docker.io' : r;
}

/**
 * PULL_MIRRORS: `docker.io=http://127.0.0.1:5001,https://mirror.example,quay.io=https://m2`: an
 * entry with `=` starts a registry's list, a bare URL adds to the list before it. Like Docker's
 * registry-mirrors, a mirror is a scheme and host only (no path); `http://` reaches it over plain HTTP.
 */
function parsePullMirrors(
  value: string | undefined,
  problems: string[],
): RegistryClientConfig['pullMirrors'] {
  const out: { registry: string; urls: string[] }[] = [];
  let current: { registry: string; urls: string[] } | null = null;
  for (const item of listItems(value)) {
    const kv = splitOnce(item, '=');
    const text = kv === null ? item : kv[1];
    const url = URL.canParse(text) ? new URL(text) : null;
    if (
      (kv === null && current === null) ||
      (kv !== null && !/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]+)?$/.test(kv[0])) ||
      url === null ||
      !/^https?:$/.test(url.protocol) ||
      url.username !== '' ||
      url.password !== '' ||
      url.pathname !== '/' ||
      url.search !== '' ||
      url.hash !== ''
    ) {
      problems.push(
        `PULL_MIRRORS: "${item}": expected registry=http(s)://host[:port], then more mirrors of that registry as http(s)://host[:port] (no path; credentials go in REGISTRY_CREDENTIALS)`,
      );
      continue;
    }
    if (kv !== null) {
      const registry = hubName(kv[0]);
      current = out.find((m) => m.registry === registry) ?? null;
      if (current === null) {
        current = { registry, urls: [] };
        out.push(current);
      }
    }
    current?.urls.push(`${url.protocol}//${url.host}`);
  }
  return out;
}

export type StorageConfig =
  | { readonly kind: 'fs'; readonly root: string }
  | {
      readonly kind: 's3';
      readonly endpoint: string;
      readonly accessKey: string;
      readonly secretKey: string;
      readonly bucket: string;
      readonly region: string;
      /** Blob GETs are redirected to presigned URLs on this endpoint; null: served by the API (see s3RedirectTarget). */
      readonly redirectEndpoint?: string | null;
      /** Why redirects are on or off (S3_REDIRECT and the endpoint), for the start-up log. */
      readonly redirectReason?: string;
      /** How long a presigned blob URL is valid. */
      readonly redirectSeconds?: number;
    };

/** Where the sentinels are and which primary they watch (REDIS_SENTINELS, REDIS_SENTINEL_NAME). */
export interface RedisSentinelConfig {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  readonly name: string;
}

/**
 * The OCI runtime a worker runs steps with when RUNTIME is unset: Debian's crun when it is
 * installed (a container starts in ~30 ms, runc's take ~70 ms on a 2-core host), else runc.
 */
export const CRUN_PATH = '/usr/bin/crun';
export const RUNC_PATH = '/usr/sbin/runc';
export function defaultRuntimePath(): string {
  return existsSync(CRUN_PATH) ? CRUN_PATH : RUNC_PATH;
}

/** The whole validated configuration, read once at boot. */
export interface StratumConfig {
  readonly redisUrl: string;
  /** Redis Sentinel: the sentinels and the primary's name; null: REDIS_URL's server directly. */
  readonly redisSentinel: RedisSentinelConfig | null;
  readonly dataDir: string;
  readonly storage: StorageConfig;
  readonly runtimePath: string;
  readonly api: {
    readonly host: string;
    readonly port: number;
    readonly publicUrl: string | null;
    /** Express's "trust proxy" (hops, or trusted addresses); null: no proxy is trusted. */
    readonly trustProxy: number | string | null;
    /** API_SHUTDOWN_TIMEOUT_MS: how long a SIGTERM'd API may take to close before it exits anyway. */
    readonly shutdownTimeoutMs: number;
  };
  readonly maxContextBytes: number;
  /** MAX_ADD_UNPACKED_BYTES: the local archives of one ADD unpack to at most this much. */
  readonly maxAddUnpackedBytes: number;
  /** Git sources of builds (ADD, named contexts). */
  readonly addGit: {
    /** ADD_GIT_SCHEMES: transports allowed; `file` only where listed (tests). */
    readonly schemes: readonly ('https' | 'http' | 'ssh' | 'git' | 'file')[];
    /** ADD_GIT_MAX_BYTES: disk one checkout (objects + files) may take. */
    readonly maxBytes: number;
    /** ADD_GIT_TIMEOUT_SECONDS: each git command is killed after this long. */
    readonly timeoutSeconds: number;
    /** ADD_GIT_SSH_KNOWN_HOSTS: known_hosts file of the ssh hosts git sources may use; null: none. */
    readonly sshKnownHostsFile: string | null;
  };
  /** Most entries a build context may hold (MAX_CONTEXT_ENTRIES): refused with 413 beyond. */
  readonly maxContextEntries: number;
  readonly buildRetentionSeconds: number;
  readonly worker: LostWorkerTimings & {
    readonly id: string;
    readonly concurrency: number;
    readonly shutdownTimeoutMs: number;
    /** Host scratch space: container roots, upper dirs, extracted contexts. */
    readonly scratchDir: string;
    /** WORKER_PLATFORMS as given (unparsed; the worker checks it against what the host can run). */
    readonly platforms: string | null;
  };
  /**
   * CONTAINER_WORKER_TIMEOUT_MS: commits and removals of a container whose worker has been gone
   * (no advert) this long fail, naming the worker, instead of waiting for it.
   */
  readonly containerWorkerTimeoutMs: number;
  readonly jobAttempts: number;
  readonly stepTimeoutSeconds: number;
  /** Memory limit of a RUN step's container (cgroup), bytes. */
  readonly stepMemoryBytes: number;
  /** Absolute path of the seccomp profile of RUN steps and containers; null: unconfined. */
  readonly seccompProfile: string | null;
  /** USERNS_REMAP as given: `auto`, `off` or a uid range (parsed and probed by the worker at boot). */
  readonly usernsRemap: string;
  readonly stepDiskBytes: number;
  /** Layers one build stores at once beside its steps; 0 stores each before the next step. */
  readonly layerExportConcurrency: number;
  /** Process/thread limit of a RUN step's container. */
  readonly stepPidsLimit: number;
  /** The host's extracted-layer cache is trimmed (least recently used first) to this after each build. */
  readonly layerCacheMaxBytes: number;
  /** `RUN --mount=type=cache` directories of a worker host are trimmed to this (LRU) after each build. */
  readonly runCacheMaxBytes: number;
  readonly logLevel: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
  /** Tests only (TEST_CRASH_POINT): where the process SIGKILLs itself, or null. */
  readonly testCrashPoint: string | null;
  /**
   * Whether `RUN --network=host` and containers with `network: host` are allowed. Off by default:
   * on the host network a step reaches the worker's Redis and anything else on localhost.
   */
  readonly allowHostNetwork: boolean;
  /**
   * Whether RUN steps (and containers) may have the sandboxed network: their own namespace
   * with outbound NAT through slirp4netns and no route to the host's own services.
   */
  readonly allowSandboxNetwork: boolean;
  /**
   * The network of a RUN step whose build and Dockerfile name none: `sandbox` by default,
   * `none` when the operator says so or has turned the sandbox off.
   */
  readonly stepNetworkDefault: 'sandbox' | 'none';
  readonly auth: AuthConfig;
  readonly registryClients: RegistryClientConfig;
  /** IMMUTABLE_TAGS: tags that never move or go away once set (enforced by the repository store). */
  readonly immutableTags: readonly ImmutableTagRule[];
  /** REPOSITORY_QUOTAS: byte limits on the unique blobs of the repositories each pattern matches. */
  readonly repositoryQuotas: readonly RepositoryQuota[];
  readonly git: GitConfig;
  readonly maintenance: MaintenanceConfig;
}

/** Git triggers: webhook receivers and fetching a project's commit. */
export interface GitConfig {
  /** Larger webhook bodies are refused with 413. */
  readonly webhookMaxBodyBytes: number;
  /** Unverified webhook bytes held at once by all deliveries; past it a delivery gets 503. */
  readonly webhookMaxInflightBytes: number;
  /** How long a delivery id is remembered; a second delivery with it is refused as a replay. */
  readonly replayTtlSeconds: number;
  /** A `git fetch` running longer is killed. */
  readonly fetchTimeoutSeconds: number;
  /** The API's ls-remote (and the check before a fetch) is killed after this long. */
  readonly connectTimeoutSeconds: number;
  /** True: projects may name `file://` repositories (tests, single-host setups). */
  readonly allowFileUrls: boolean;
  /** Commit statuses to forges: attempts, first backoff (ms, doubling each time), one call's timeout (ms). */
  readonly outgoing: { readonly attempts: number; readonly backoffMs: number; readonly timeoutMs: number };
  /** Service-wide notification receivers and the key their bodies are signed with. */
  readonly notify: { readonly urls: readonly string[]; readonly secret: string | null };
}

/** Scheduled maintenance of the API (one replica runs each job, under a Redis lock). */
export interface MaintenanceConfig {
  /** Cron expression of the maintenance run, or null (`off`) for manual runs only. */
  readonly schedule: string | null;
  /** Cron expression of the blob store fsck (re-hash everything; weekly by default), or null. */
  readonly fsckSchedule: string | null;
  /** Garbage collection never deletes a blob written less than this long ago. */
  readonly gcGraceSeconds: number;
  /** Keep this many newest tags per repository (0: keep all). */
  readonly retentionKeepTags: number;
  /** Unlink untagged manifests older than this many days (0: never). */
  readonly retentionUntaggedDays: number;
  /** Repository patterns (`*` matches anything) retention applies to. */
  readonly retentionRepositories: readonly string[];
  /** Exited containers untouched this long are removed. */
  readonly containerIdleSeconds: number;
}

function describe(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** The worker timings derived from WORKER_LOST_MS (see {@link lostWorkerTimings}). */
export interface LostWorkerTimings {
  /** WORKER_LOST_MS: a lost worker's jobs go on elsewhere at most this long after it stops. */
  readonly lostMs: number;
  /** BullMQ job lock: a job whose worker stops renewing it for this long is stalled. */
  readonly lockDurationMs: number;
  /** How often the lock of a running job is renewed (BullMQ lockRenewTime). */
  readonly lockRenewMs: number;
  /** How often BullMQ looks for stalled jobs (and moves them back to waiting). */
  readonly stalledIntervalMs: number;
  /** How often the worker writes its liveness record (advert) to Redis. */
  readonly heartbeatMs: number;
  /** How long one liveness record says the worker is alive: it is gone this long after its last heartbeat. */
  readonly livenessTtlMs: number;
}

/**
 * Derives the takeover timings from one bound, `lostMs` (WORKER_LOST_MS, L).
 *
 * BullMQ moves a job back to waiting at the first stalled check after its lock expired, so a
 * dead worker's job is free at most lockDuration + stalledInterval after its death (the lock was
 * renewed at the latest when it died). lockDuration = 0.7 L and stalledInterval = 0.25 L keep
 * that at 0.95 L, the rest for the check itself and the pick-up by another worker. The lock is
 * renewed every lockDuration / 3 (BullMQ's default, / 2, would tolerate less): a live worker is
 * taken for lost only when a renewal is late by more than 2/3 lockDuration (0.47 L, 3.7 s by
 * default), e.g. its event loop or Redis stalled that long.
 *
 * The liveness record (advert) is written every L / 8 and lasts 3/8 L: a dead worker's record
 * has lapsed before its build is taken over (which is at least 2/3 lockDuration = 0.47 L after
 * the death), so a record still live at a takeover means the old worker is alive.
 *
 * `overrides` (WORKER_LOCK_DURATION_MS, WORKER_STALLED_INTERVAL_MS) replace the derived BullMQ
 * timings; their sum may not exceed L (a problem is added otherwise).
 */
export function lostWorkerTimings(
  lostMs: number,
  overrides: { lockDurationMs?: number; stalledIntervalMs?: number } = {},
  problems: string[] = [],
): LostWorkerTimings | null {
  const lockDurationMs = overrides.lockDurationMs ?? Math.round(lostMs * 0.7);
  const stalledIntervalMs = overrides.stalledIntervalMs ?? Math.round(lostMs / 4);
  if (lockDurationMs + stalledIntervalMs > lostMs) {
    problems.push(
      `WORKER_LOCK_DURATION_MS + WORKER_STALLED_INTERVAL_MS (${lockDurationMs} + ${stalledIntervalMs} ms) ` +
        `exceed WORKER_LOST_MS (${lostMs} ms): a lost worker could go undetected that long; ` +
        `raise WORKER_LOST_MS or unset the overrides (they are derived from it)`,
    );
    return null;
  }
  const heartbeatMs = Math.round(lostMs / 8);
  return {
    lostMs,
    lockDurationMs,
    lockRenewMs: Math.round(lockDurationMs / 3),
    stalledIntervalMs,
    heartbeatMs,
    livenessTtlMs: 3 * heartbeatMs,
  };
}

/**
 * Validates the environment. Backend-specific settings are required only when that backend
 * is chosen (S3_* only with STORAGE=s3). Throws {@link ConfigError} naming every problem.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): StratumConfig {
  const clean = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const { s3Schema, authSchema, baseSchema } = schemas();
  const base = baseSchema.safeParse(clean);
  const problems: string[] = base.success ? [] : describe(base.error.issues);
  let storage: StorageConfig | null = null;
  const chosen = base.success ? base.data.STORAGE : clean.STORAGE;
  const dataDir = resolve(base.success ? base.data.DATA_DIR : (clean.DATA_DIR ?? './.data'));
  if (chosen === 's3') {
    const s3 = s3Schema.safeParse(clean);
    if (s3.success) {
      storage = {
        kind: 's3',
        endpoint: s3.data.S3_ENDPOINT,
        accessKey: s3.data.S3_ACCESS_KEY,
        secretKey: s3.data.S3_SECRET_KEY,
        bucket: s3.data.S3_BUCKET,
        region: s3.data.S3_REGION,
        ...s3RedirectTarget(s3.data.S3_REDIRECT, s3.data.S3_ENDPOINT, s3.data.S3_REDIRECT_ENDPOINT ?? null),
        redirectSeconds: s3.data.S3_REDIRECT_SECONDS,
      };
    } else {
      problems.push(...describe(s3.error.issues).map((p) => `${p} (required because STORAGE=s3)`));
    }
  } else {
    storage = { kind: 'fs', root: resolve(dataDir, 'store') };
  }
  const authEnv = authSchema.safeParse(clean);
  let auth: AuthConfig | null = null;
  let registryClients: RegistryClientConfig | null = null;
  let immutableTags: ImmutableTagRule[] = [];
  let repositoryQuotas: RepositoryQuota[] = [];
  if (authEnv.success) {
    auth = parseAuth(authEnv.data, problems);
    registryClients = parseRegistryClients(authEnv.data, problems);
    immutableTags = parseImmutableTags(authEnv.data.IMMUTABLE_TAGS, problems);
    repositoryQuotas = parseRepositoryQuotas(authEnv.data.REPOSITORY_QUOTAS, problems);
  } else {
    problems.push(...describe(authEnv.error.issues));
  }
  const host =
    base.success && auth !== null
      ? apiHost(base.data.API_HOST, auth, base.data.ALLOW_UNAUTHENTICATED_NETWORK, problems)
      : '127.0.0.1';
  if (base.success && base.data.STEP_NETWORK_DEFAULT === 'sandbox' && !base.data.ALLOW_SANDBOX_NETWORK) {
    problems.push('STEP_NETWORK_DEFAULT: "sandbox" cannot be the default with ALLOW_SANDBOX_NETWORK=false');
  }
  const timings = base.success
    ? lostWorkerTimings(
        base.data.WORKER_LOST_MS,
        {
          lockDurationMs: base.data.WORKER_LOCK_DURATION_MS,
          stalledIntervalMs: base.data.WORKER_STALLED_INTERVAL_MS,
        },
        problems,
      )
    : null;
  if (
    !base.success ||
    storage === null ||
    auth === null ||
    registryClients === null ||
    timings === null ||
    problems.length > 0
  ) {
    throw new ConfigError(problems);
  }
  const c = base.data;
  return {
    redisUrl: c.REDIS_URL,
    redisSentinel:
      c.REDIS_SENTINELS === undefined
        ? null
        : {
            sentinels: c.REDIS_SENTINELS.split(',').map((hp) => {
              const at = hp.lastIndexOf(':');
              return { host: hp.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(hp.slice(at + 1)) };
            }),
            name: c.REDIS_SENTINEL_NAME,
          },
    dataDir,
    storage,
    runtimePath: c.RUNTIME,
    api: {
      host,
      port: c.API_PORT,
      publicUrl: c.PUBLIC_URL ?? null,
      trustProxy:
        c.TRUST_PROXY === undefined
          ? null
          : /^\d+$/.test(c.TRUST_PROXY)
            ? Number(c.TRUST_PROXY)
            : c.TRUST_PROXY,
      shutdownTimeoutMs: c.API_SHUTDOWN_TIMEOUT_MS,
    },
    maxContextBytes: c.MAX_CONTEXT_BYTES,
    maxAddUnpackedBytes: c.MAX_ADD_UNPACKED_BYTES,
    addGit: {
      schemes: [...new Set(listItems(c.ADD_GIT_SCHEMES).map((s) => s.toLowerCase()))] as (
        'https' | 'http' | 'ssh' | 'git' | 'file'
      )[],
      maxBytes: c.ADD_GIT_MAX_BYTES,
      timeoutSeconds: c.ADD_GIT_TIMEOUT_SECONDS,
      sshKnownHostsFile: c.ADD_GIT_SSH_KNOWN_HOSTS ?? null,
    },
    maxContextEntries: c.MAX_CONTEXT_ENTRIES,
    buildRetentionSeconds: c.BUILD_RETENTION_SECONDS,
    worker: {
      id: c.WORKER_ID,
      concurrency: c.WORKER_CONCURRENCY,
      shutdownTimeoutMs: c.WORKER_SHUTDOWN_TIMEOUT_MS,
      ...timings,
      scratchDir: resolve(dataDir, 'worker', c.WORKER_ID),
      platforms: c.WORKER_PLATFORMS ?? null,
    },
    containerWorkerTimeoutMs: c.CONTAINER_WORKER_TIMEOUT_MS,
    jobAttempts: c.JOB_ATTEMPTS,
    stepTimeoutSeconds: c.STEP_TIMEOUT_SECONDS,
    stepMemoryBytes: c.STEP_MEMORY_BYTES,
    stepDiskBytes: c.STEP_DISK_BYTES,
    layerExportConcurrency: c.LAYER_EXPORT_CONCURRENCY,
    stepPidsLimit: c.STEP_PIDS_LIMIT,
    seccompProfile: c.SECCOMP_PROFILE === 'unconfined' ? null : c.SECCOMP_PROFILE,
    usernsRemap: c.USERNS_REMAP,
    layerCacheMaxBytes: c.LAYER_CACHE_MAX_BYTES,
    runCacheMaxBytes: c.RUN_CACHE_MAX_BYTES,
    logLevel: c.LOG_LEVEL,
    testCrashPoint: c.TEST_CRASH_POINT ?? null,
    allowHostNetwork: c.ALLOW_HOST_NETWORK,
    allowSandboxNetwork: c.ALLOW_SANDBOX_NETWORK,
    stepNetworkDefault: c.STEP_NETWORK_DEFAULT ?? (c.ALLOW_SANDBOX_NETWORK ? 'sandbox' : 'none'),
    auth,
    registryClients,
    immutableTags,
    repositoryQuotas,
    git: {
      webhookMaxBodyBytes: c.WEBHOOK_MAX_BODY_BYTES,
      webhookMaxInflightBytes: c.WEBHOOK_MAX_INFLIGHT_BYTES,
      replayTtlSeconds: c.WEBHOOK_REPLAY_TTL_SECONDS,
      fetchTimeoutSeconds: c.GIT_FETCH_TIMEOUT_SECONDS,
      connectTimeoutSeconds: c.GIT_CONNECT_TIMEOUT_SECONDS,
      allowFileUrls: c.GIT_ALLOW_FILE_URLS,
      notify: { urls: listItems(c.NOTIFY_URLS), secret: c.NOTIFY_SECRET ?? null },
      outgoing: {
        attempts: c.OUTGOING_ATTEMPTS,
        backoffMs: c.OUTGOING_BACKOFF_MS,
        timeoutMs: c.OUTGOING_TIMEOUT_MS,
      },
    },
    maintenance: {
      schedule: c.MAINTENANCE_SCHEDULE === 'off' ? null : c.MAINTENANCE_SCHEDULE,
      fsckSchedule: c.FSCK_SCHEDULE === 'off' ? null : c.FSCK_SCHEDULE,
      gcGraceSeconds: c.GC_GRACE_SECONDS,
      retentionKeepTags: c.RETENTION_KEEP_TAGS,
      retentionUntaggedDays: c.RETENTION_UNTAGGED_DAYS,
      retentionRepositories: listItems(c.RETENTION_REPOSITORIES),
      containerIdleSeconds: c.CONTAINER_IDLE_SECONDS,
    },
  };
}

/** Settings of the `stratum` CLI. */
export interface CliConfig {
  /** Base URL of the Stratum API. */
  readonly serverUrl: string;
  /** API token sent as a Bearer token, when set. */
  readonly token: string | null;
  /**
   * Where the CLI remembers the digests of contexts it sent (`$XDG_CACHE_HOME/stratum`, else
   * `~/.cache/stratum`), so an unchanged context is not uploaded again; null: no such cache.
   */
  readonly cacheDir: string | null;
  /**
   * PEM file of CAs trusted for an https server beside Node's own roots
   * (`STRATUM_EXTRA_CA_CERTS`; apps/cli/bin/stratum moves NODE_EXTRA_CA_CERTS here, so that
   * Node does not parse the bundle at every start), loaded on the first https request.
   */
  readonly extraCaFile: string | null;
  /**
   * Where `stratum login` keeps credentials (`$XDG_CONFIG_HOME/stratum`, else
   * `~/.config/stratum`; the file 0600); null when there is no home to put it in.
   */
  readonly configDir: string | null;
  /** The environment `stratum build --secret id=x,env=NAME` reads a value from (docker build's way). */
  readonly environment?: Readonly<Record<string, string | undefined>>;
}

export function loadCliConfig(env: Record<string, string | undefined> = process.env): CliConfig {
  const raw = env.STRATUM_URL ?? 'http://127.0.0.1:8080';
  if (!URL.canParse(raw) || !/^https?:$/.test(new URL(raw).protocol)) {
    throw new ConfigError([`STRATUM_URL: must be a URL such as http://127.0.0.1:8080`]);
  }
  const cacheHome = env.XDG_CACHE_HOME || (env.HOME ? `${env.HOME}/.cache` : '');
  const configHome = env.XDG_CONFIG_HOME || (env.HOME ? `${env.HOME}/.config` : '');
  return {
    serverUrl: raw.replace(/\/+$/, ''),
    token: env.STRATUM_TOKEN ?? null,
    cacheDir: env.STRATUM_NO_CONTEXT_CACHE === '1' || cacheHome === '' ? null : `${cacheHome}/stratum`,
    extraCaFile: env.STRATUM_EXTRA_CA_CERTS || null,
    configDir: configHome === '' ? null : `${configHome}/stratum`,
    environment: env,
  };
}

/**
 * For a process entry point, before Nest's shutdown hooks: on the first SIGTERM or SIGINT, a
 * timer (not keeping the process alive) that exits with code 1 if the graceful shutdown has not
 * ended within `ms`. A shutdown waits for Redis (BullMQ hands jobs back, ioredis quits) and for
 * open connections; with Redis gone those waits never end and the signal would be ignored.
 */
export function exitIfShutdownOverruns(processName: string, ms: number, log: (m: string) => void): void {
  const deadline = (): void => {
    setTimeout(() => {
      log(`${processName}: shutdown did not finish within ${ms} ms (Redis unreachable?): exiting`);
      process.exit(1);
    }, ms).unref();
  };
  process.once('SIGTERM', deadline);
  process.once('SIGINT', deadline);
}

/** Nest logger levels enabled by a LOG_LEVEL (that level and everything more severe). */
export function loggerLevels(level: StratumConfig['logLevel']): StratumConfig['logLevel'][] {
  const order = ['error', 'warn', 'log', 'debug', 'verbose'] as const;
  return order.slice(0, order.indexOf(level) + 1);
}

/**
 * For a process entry point: the validated config, or — on a ConfigError — the problems on
 * stderr and exit code 2, before anything else starts.
 */
export function loadConfigOrExit(
  processName: string,
  env: Record<string, string | undefined> = process.env,
): StratumConfig {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${processName}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
