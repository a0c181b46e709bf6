import { validateCronExpression } from 'cron';
import { z } from 'zod';
import { checkKnownHosts } from '@stratum/git';

const BUILD_ARG = /^[A-Za-z_][A-Za-z0-9_]*$/;
const insideRepo = (p: string): boolean => !p.startsWith('/') && !p.split('/').includes('..');

const cron = z
  .string()
  .max(200)
  .refine((c) => validateCronExpression(c).valid, 'must be a cron expression such as "0 4 * * *"');

/** Fields of a project a request may set (POST: all but `name` optional; PUT: all optional). */
const projectFields = {
  repoUrl: z.string().min(1).max(2048),
  forge: z.enum(['github', 'gitlab', 'gitea'], { message: 'must be github, gitlab or gitea' }).nullable(),
  forgeApiUrl: z
    .url({ protocol: /^https?$/, message: 'must be an http(s) URL' })
    .max(2048)
    .nullable(),
  forgeRepository: z
    .string()
    .max(512)
    .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, 'must be owner/repo (GitLab: group/…/project or an id)')
    .nullable(),
  /** Kept sealed; never shown (`hasStatusToken`). */
  statusToken: z.string().min(1).max(4096).nullable(),
  branches: z
    .array(
      z
        .string()
        .min(1)
        .max(255)
        .regex(/^[^\s~^:?[\\]+$/, 'must be a branch name (optionally ending in *)'),
    )
    .min(1)
    .max(100),
  context: z.string().min(1).max(4096).refine(insideRepo, 'must stay inside the repository'),
  dockerfile: z.string().min(1).max(4096).refine(insideRepo, 'must stay inside the build context'),
  tags: z
    .array(z.string().min(1).max(300))
    .min(1)
    .max(20)
    .refine((ts) => ts.every((t) => t.includes(':')), 'each tag template must be repo:tag'),
  tagPatterns: z
    .array(
      z
        .string()
        .min(1)
        .max(255)
        .regex(/^[^\s~^:?[\\]+$/, 'must be a tag name (optionally ending in *)'),
    )
    .max(100),
  tagTemplates: z
    .array(z.string().min(1).max(300))
    .min(1)
    .max(20)
    .refine((ts) => ts.every((t) => t.includes(':')), 'each tag template must be repo:tag'),
  pullRequests: z.boolean(),
  prTemplates: z
    .array(z.string().min(1).max(300))
    .min(1)
    .max(20)
    .refine((ts) => ts.every((t) => t.includes(':')), 'each tag template must be repo:tag'),
  autoCancel: z.boolean(),
  notifyUrl: z
    .url({ protocol: /^https?$/, message: 'must be an http(s) URL' })
    .max(2048)
    .nullable(),
  /** Kept sealed; never shown. */
  notifySecret: z.string().min(16, 'must be at least 16 characters').max(256).nullable(),
  repository: z
    .string()
    .regex(/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/)
    .max(255),
  buildArgs: z.record(z.string().regex(BUILD_ARG), z.string()),
  target: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
    .nullable(),
  secret: z.string().min(8, 'must be at least 8 characters').max(256).nullable(),
  credentials: z
    .object({ username: z.string().min(1).max(255).optional(), token: z.string().min(1).max(4096) })
    .nullable(),
  sshKnownHosts: z
    .string()
    .superRefine((t, ctx) => {
      const problem = checkKnownHosts(t);
      if (problem !== null) {
        ctx.addIssue({ code: 'custom', message: `must be known_hosts lines: ${problem}` });
      }
    })
    .nullable(),
  schedule: cron.nullable(),
  scheduleBranch: z
    .string()
    .min(1)
    .max(255)
    .regex(/^[^\s~^:?*[\\]+$/)
    .nullable(),
};

export const ProjectNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be lower-case letters, digits, ".", "_" or "-"');

export const CreateProjectBodySchema = z.object({
  name: ProjectNameSchema,
  repoUrl: projectFields.repoUrl,
  forge: projectFields.forge.default(null),
  forgeApiUrl: projectFields.forgeApiUrl.default(null),
  forgeRepository: projectFields.forgeRepository.default(null),
  statusToken: projectFields.statusToken.default(null),
  branches: projectFields.branches.default(['main']),
  context: projectFields.context.default('.'),
  dockerfile: projectFields.dockerfile.default('Dockerfile'),
  tags: projectFields.tags.default(['{repo}:{branch}', '{repo}:{shortsha}']),
  tagPatterns: projectFields.tagPatterns.default(['*']),
  tagTemplates: projectFields.tagTemplates.default(['{repo}:{tag}']),
  pullRequests: projectFields.pullRequests.default(true),
  prTemplates: projectFields.prTemplates.default(['{repo}:pr-{pr}']),
  autoCancel: projectFields.autoCancel.default(true),
  notifyUrl: projectFields.notifyUrl.default(null),
  notifySecret: projectFields.notifySecret.default(null),
  repository: projectFields.repository.optional(),
  buildArgs: projectFields.buildArgs.default({}),
  target: projectFields.target.default(null),
  secret: projectFields.secret.default(null),
  credentials: projectFields.credentials.default(null),
  schedule: projectFields.schedule.default(null),
  scheduleBranch: projectFields.scheduleBranch.default(null),
  sshKnownHosts: projectFields.sshKnownHosts.default(null),
});
export type CreateProjectBody = z.infer<typeof CreateProjectBodySchema>;

export const UpdateProjectBodySchema = z.object(
  Object.fromEntries(Object.entries(projectFields).map(([k, v]) => [k, v.optional()])) as {
    [K in keyof typeof projectFields]: z.ZodOptional<(typeof projectFields)[K]>;
  },
);
export type UpdateProjectBody = z.infer<typeof UpdateProjectBodySchema>;

export const TriggerProjectBodySchema = z.object({
  branch: z.string().min(1).max(255).optional(),
  sha: z
    .string()
    .regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/)
    .optional(),
});
export type TriggerProjectBody = z.infer<typeof TriggerProjectBodySchema>;
