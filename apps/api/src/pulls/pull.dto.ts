import { z } from 'zod';
import { repositoryName, tagName } from '../images/images.dto';

/** Body of `POST /api/v1/images/pull` (as `docker pull`, into this registry). */
export const PullImageBodySchema = z.object({
  /** `[host[:port]/]repo[:tag|@sha256:…]` of another registry (docker.io when no host is named). */
  source: z.string().min(1).max(512),
  /** Our repository (default: the source's path without its registry; `library/` dropped for Docker Hub). */
  repository: repositoryName.optional(),
  tag: tagName.optional(),
  /** For the other registry, when REGISTRY_CREDENTIALS has none for it; used for this pull only. */
  credentials: z
    .object({ username: z.string().min(1).max(512), password: z.string().min(1).max(8192) })
    .optional(),
});
export type PullImageBody = z.infer<typeof PullImageBodySchema>;
