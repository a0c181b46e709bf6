import { z } from 'zod';
import {
  Digest,
  formatPlatform,
  HistoryEntry,
  ContainerConfig,
  parsePlatform,
  PlatformError,
} from '@stratum/oci';
import { isRepositoryName, isTagName } from '@stratum/storage';

export const repositoryName = z
  .string()
  .refine(
    isRepositoryName,
    'must be a repository name: lowercase [a-z0-9] components separated by . _ - and /',
  );
export const tagName = z.string().refine(isTagName, 'must be a tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}');

/** One platform (`linux/arm64`, `arm64`, `linux/arm/v7`), normalised; refused naming what is wrong. */
export const platformString = z.string().transform((v, ctx) => {
  try {
    return formatPlatform(parsePlatform(v));
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: err instanceof PlatformError ? err.message : String(err) });
    return z.NEVER;
  }
});

/** Query of `POST /api/v1/images/import` (as `docker import - repository:tag -m message`). */
export const ImportImageQuerySchema = z.object({
  repository: repositoryName,
  tag: tagName.default('latest'),
  message: z.string().max(4096).default(''),
  /** The platform the rootfs is for (`docker import --platform`): `linux/arm64`; default linux/amd64. */
  platform: platformString.optional(),
  /** `--change` instructions (`CMD ["sh"]`, `ENV A=b`…), one per `change` parameter. */
  change: z
    .union([z.string(), z.array(z.string())])
    .default([])
    .transform((c) => (Array.isArray(c) ? c : [c]))
    .pipe(
      z
        .array(
          z
            .string()
            .min(1)
            .max(64 * 1024),
        )
        .max(256),
    ),
});
export type ImportImageQuery = z.infer<typeof ImportImageQuerySchema>;

/** Body of `POST /api/v1/images/:ref/tag`. */
export const TagImageBodySchema = z.object({
  repository: repositoryName,
  tag: tagName.default('latest'),
});
export type TagImageBody = z.infer<typeof TagImageBodySchema>;

/** A `repo`, `repo:tag` or `repo@sha256:…` of our registry (URL-encoded in the path). */
/** A `*ref` route parameter: Express gives the path's segments as an array; one name again. */
export const ImageRefParamSchema = z.preprocess(
  (v) => (Array.isArray(v) ? v.join('/') : v),
  z.string().min(1).max(512),
);

export interface ImageLayerView {
  readonly digest: Digest;
  readonly diffId: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** `GET /api/v1/images/:ref`. */
export interface ImageDetail {
  readonly reference: string;
  readonly repository: string | null;
  readonly manifestDigest: Digest;
  readonly configDigest: Digest;
  readonly created: string | null;
  readonly author: string | null;
  readonly architecture: string;
  readonly os: string;
  /** Sum of compressed layer sizes. */
  readonly size: number;
  readonly layers: ImageLayerView[];
  readonly history: HistoryEntry[];
  readonly config: ContainerConfig;
  /** When the reference names a multi-platform image: the index's digest (the rest is linux/amd64's, else the first platform's). */
  readonly index?: Digest;
  /** Every platform of a multi-platform image. */
  readonly platforms?: {
    readonly platform: string;
    readonly manifestDigest: Digest;
    readonly configDigest: Digest;
    readonly size: number;
  }[];
}

/** 201 answer of an import. */
export interface ImportedImage {
  readonly repository: string;
  readonly tag: string;
  readonly manifestDigest: Digest;
  readonly configDigest: Digest;
  readonly layer: ImageLayerView;
}

/** 201 answer of a tag. */
export interface TaggedImage {
  readonly repository: string;
  readonly tag: string;
  readonly manifestDigest: Digest;
}

/** Query of `DELETE /api/v1/images/:ref` (`docker rmi [-f]`). */
export const RemoveImageQuerySchema = z.object({
  force: z
    .enum(['true', 'false', '1', '0'])
    .default('false')
    .transform((v) => v === 'true' || v === '1'),
});
export type RemoveImageQuery = z.infer<typeof RemoveImageQuerySchema>;
