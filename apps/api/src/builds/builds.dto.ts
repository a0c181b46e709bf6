import { z } from 'zod';
import { BuildState } from '@stratum/contracts';
import { parsePlatformList, PlatformError } from '@stratum/oci';

const reference = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-z0-9][a-z0-9._\-/:@]*$/i, 'must be an image reference such as repo:tag');

const stringOrList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : [v]));

/**
 * Query of `POST /api/v1/builds`, named as Docker Engine's `POST /build` names them
 * (https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Image/operation/ImageBuild):
 * `t` (repeatable), `dockerfile`, `buildargs` (a JSON object), `target`, `nocache`, and
 * `network` (`sandbox` | `none` | `default`, as `docker build --network`).
 */
export const SubmitBuildQuerySchema = z.object({
  t: stringOrList.pipe(z.array(reference)).default([]),
  dockerfile: z
    .string()
    .min(1)
    .max(4096)
    .default('Dockerfile')
    .refine((p) => !p.split('/').includes('..'), 'must stay inside the build context'),
  buildargs: z
    .string()
    .default('{}')
    .transform((raw, ctx) => {
      try {
        const parsed: unknown = JSON.parse(raw);
        const args = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).safeParse(parsed);
        if (args.success) {
          return args.data;
        }
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of NAME: "value" strings' });
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be valid JSON' });
      }
      return z.NEVER;
    }),
  target: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be a stage name')
    .optional(),
  nocache: z
    .enum(['true', 'false', '1', '0'])
    .default('false')
    .transform((v) => v === 'true' || v === '1'),
  push: z
    .enum(['true', 'false', '1', '0'])
    .default('false')
    .transform((v) => v === 'true' || v === '1'),
  /** RUN steps' network unless a step names its own; `default` (or absent): the service's. */
  network: z
    .enum(['sandbox', 'none', 'default'], { message: 'must be sandbox, none or default' })
    .optional()
    .transform((v) => (v === 'default' ? undefined : v)),
  /**
   * Build from a context the server already stores (the `contextDigest` of an earlier
   * submission) instead of the body; answered with CONTEXT_MISSING when it is not stored,
   * and the client then uploads it. The worker checks that it holds the Dockerfile.
   */
  context: z
    .string()
    .regex(/^sha256:[a-f0-9]{64}$/, 'must be a sha256 digest')
    .optional(),
  /**
   * `linux/amd64,linux/arm64` (as `docker buildx build --platform`): one image per platform,
   * tagged as an OCI index (one platform: its image). Normalised; an unknown one is refused.
   */
  platform: z
    .string()
    .max(1024)
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) {
        return undefined;
      }
      try {
        return parsePlatformList(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof PlatformError ? err.message : String(err) });
        return z.NEVER;
      }
    }),
  /** A bundle made by `POST /api/v1/builds/secrets`: the build's secrets, by id. */
  secrets: z.string().uuid('must be the secretsId of POST /api/v1/builds/secrets').optional(),
  /**
   * Named build contexts as a JSON object `{"name": "<value>"}` (buildx `--build-context`):
   * `sha256:<digest>` of a tar sent to `POST /api/v1/builds/contexts`, `docker-image://ref`,
   * a git URL (`#ref:subdir`) or an `https://` tarball.
   */
  buildcontexts: z
    .string()
    .max(64 * 1024)
    .transform((raw, ctx) => {
      try {
        const parsed = z.record(z.string(), z.string().max(8192)).safeParse(JSON.parse(raw));
        if (parsed.success) {
          return parsed.data;
        }
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of name: "value" strings' });
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be valid JSON' });
      }
      return z.NEVER;
    })
    .optional(),
});
export type SubmitBuildQuery = z.infer<typeof SubmitBuildQuerySchema>;

/** `GET /api/v1/builds/:id/output?type=tar|oci`. */
export const BuildOutputQuerySchema = z.object({
  type: z.enum(['tar', 'oci'], { message: 'must be tar or oci' }).default('tar'),
});
export type BuildOutputQuery = z.infer<typeof BuildOutputQuerySchema>;

/** `POST /api/v1/builds/check`: the build args and target a build would get. */
export const CheckDockerfileQuerySchema = SubmitBuildQuerySchema.pick({ buildargs: true, target: true });

export type CheckDockerfileQuery = z.infer<typeof CheckDockerfileQuerySchema>;

export const ListBuildsQuerySchema = z
  .object({
    offset: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(200).default(20),
    state: z.enum(Object.values(BuildState) as [BuildState, ...BuildState[]]).optional(),
    /** Builds of this project only. */
    project: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be a project name')
      .optional(),
    /** With `project`: builds of this git ref only (`main` is read as `refs/heads/main`). */
    ref: z
      .string()
      .min(1)
      .max(300)
      .regex(/^[^\s~^:?*[\\]+$/, 'must be a git ref or branch name')
      .transform((r) => (r.startsWith('refs/') ? r : `refs/heads/${r}`))
      .optional(),
  })
  .refine((q) => q.ref === undefined || q.project !== undefined, {
    message: 'ref needs project',
    path: ['ref'],
  });
export type ListBuildsQuery = z.infer<typeof ListBuildsQuerySchema>;

/** `GET /api/v1/builds/stats`: the window in days (today included) and an optional project. */
export const BuildStatsQuerySchema = z
  .object({
    days: z.coerce.number().int().min(1).max(90).default(14),
    project: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be a project name')
      .optional(),
  })
  .strict();
export type BuildStatsQuery = z.infer<typeof BuildStatsQuerySchema>;

/** 202 answer to a build submission. */
export interface BuildSubmitted {
  readonly id: string;
  readonly state: BuildState;
  readonly url: string;
  readonly logsUrl: string;
  readonly contextDigest: string;
}

/**
 * `POST /api/v1/builds/secrets`: secret id -> base64 of its value; ssh id -> base64 of each
 * private key file (`RUN --mount=type=ssh`, as `docker buildx build --ssh id=path`).
 */
export const BuildSecretsBodySchema = z.object({
  secrets: z.record(z.string(), z.string().base64('must be base64')).default({}),
  ssh: z.record(z.string(), z.array(z.string().base64('must be base64')).min(1).max(8)).default({}),
});

/** `POST /api/v1/builds/contexts`: a named context's tar, stored; name it by `digest` in `buildcontexts`. */
export interface BuildContextStored {
  readonly digest: string;
  readonly size: number;
}

export interface BuildSecretsCreated {
  /** Pass as `secrets=` to `POST /api/v1/builds` (valid for a day; deleted when that build ends). */
  readonly secretsId: string;
}
