import { z } from 'zod';
import { PushRecord } from '@stratum/contracts';

/** Body of `POST /api/v1/images/:ref/push`. */
export const PushImageBodySchema = z.object({
  /** `repo:tag` (this registry) or `host[:port]/repo:tag` (another registry). */
  targets: z.array(z.string().min(1).max(512)).min(1).max(32),
  /**
   * For the other registries of this push; kept encrypted (AUTH_SECRET) in Redis until the push
   * ends, never in the job; refused (400) when AUTH_SECRET is unset.
   */
  credentials: z
    .object({ username: z.string().min(1).max(512), password: z.string().min(1).max(8192) })
    .optional(),
});
export type PushImageBody = z.infer<typeof PushImageBodySchema>;

/** 202 answer of a push request, and `GET /api/v1/pushes/:id`. */
export interface PushView extends PushRecord {
  readonly url: string;
}
