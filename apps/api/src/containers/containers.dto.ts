import { z } from 'zod';
import { CONTAINER_ID, ContainerState } from '@stratum/contracts';
import { repositoryName, tagName } from '../images/images.dto';

const envName = /^[^=\0]+$/;

/**
 * Body of `POST /api/v1/containers` (as `docker run [-e] [-w] [-u] [--network] IMAGE CMD...`).
 * `env` is `["KEY=value"]` or `{"KEY": "value"}`.
 */
export const CreateContainerBodySchema = z.object({
  image: z.string().min(1).max(512),
  cmd: z
    .array(z.string().max(128 * 1024))
    .max(4096)
    .default([]),
  env: z
    .union([
      z.array(z.string().regex(/^[^=\0]+=[^\0]*$/, 'must be KEY=value')),
      z.record(z.string().regex(envName, 'must be a variable name'), z.string()),
    ])
    .default([])
    .transform((env) => (Array.isArray(env) ? env : Object.entries(env).map(([k, v]) => `${k}=${v}`))),
  workdir: z
    .string()
    .regex(/^\/[^\0]*$/, 'must be an absolute path')
    .optional(),
  user: z
    .string()
    .regex(/^[^:\0\s]+(:[^:\0\s]+)?$/, 'must be user, uid, user:group or uid:gid')
    .optional(),
  /** Absent: the service's STEP_NETWORK_DEFAULT (`sandbox` unless the operator says otherwise). */
  network: z.enum(['sandbox', 'none', 'host']).optional(),
});
export type CreateContainerBody = z.infer<typeof CreateContainerBodySchema>;

/** Body of `POST /api/v1/containers/:id/commit` (as `docker commit -m -a -c`). */
export const CommitContainerBodySchema = z.object({
  repository: repositoryName,
  tag: tagName.default('latest'),
  message: z
    .string()
    .max(64 * 1024)
    .default(''),
  author: z.string().max(1024).default(''),
  changes: z
    .array(
      z
        .string()
        .min(1)
        .max(64 * 1024),
    )
    .max(256)
    .default([]),
});
export type CommitContainerBody = z.infer<typeof CommitContainerBodySchema>;

export const ContainerIdParamSchema = z
  .string()
  .regex(CONTAINER_ID, 'must be a container id (32 hex digits)');

/** 202 answer of a create. */
export interface ContainerCreated {
  readonly id: string;
  readonly state: ContainerState;
  readonly url: string;
}

/** 202 answer of a commit: follow it on the container record's `commits[]`. */
export interface CommitAccepted {
  readonly commitId: string;
  readonly containerId: string;
  readonly state: 'queued';
  /** The container's URL; its `commits[]` entry with this id carries the state and the image digest. */
  readonly url: string;
}
