import { z } from 'zod';
import { isDigest } from './digest';
import { MediaType } from './media-types';

// Schemas for what enters from outside (pushed manifests, pulled configs). Parsed once at the
// boundary (CONVENTIONS.md §8). Specs:
//   descriptor  https://github.com/opencontainers/image-spec/blob/main/descriptor.md
//   manifest    https://github.com/opencontainers/image-spec/blob/main/manifest.md
//   index       https://github.com/opencontainers/image-spec/blob/main/image-index.md
//   config      https://github.com/opencontainers/image-spec/blob/main/config.md
//   Docker v2.2 https://distribution.github.io/distribution/spec/manifest-v2-2/

/** RFC 6838 media type, as the descriptor spec requires. */
const mediaTypeString = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/,
    'invalid media type',
  );
const digestString = z.string().refine(isDigest, 'invalid digest (sha256/sha512 lowercase hex expected)');
const annotations = z.record(z.string(), z.string());

/** https://github.com/opencontainers/image-spec/blob/main/image-index.md#image-index-property-descriptions */
export const platformSchema = z.object({
  architecture: z.string().min(1),
  os: z.string().min(1),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
  features: z.array(z.string()).optional(),
});
export type Platform = z.infer<typeof platformSchema>;

export const descriptorSchema = z.object({
  mediaType: mediaTypeString,
  digest: digestString,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: annotations.optional(),
  data: z.base64().optional(),
  artifactType: mediaTypeString.optional(),
  platform: platformSchema.optional(),
});
/** A content descriptor: media type, digest and size of a blob. */
export type Descriptor = z.infer<typeof descriptorSchema>;

export const ociImageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MediaType.OciManifest).optional(),
  artifactType: mediaTypeString.optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: annotations.optional(),
});
export type OciImageManifest = z.infer<typeof ociImageManifestSchema>;

export const ociImageIndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MediaType.OciIndex).optional(),
  artifactType: mediaTypeString.optional(),
  manifests: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: annotations.optional(),
});
export type OciImageIndex = z.infer<typeof ociImageIndexSchema>;

export const dockerManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MediaType.DockerManifest),
  config: descriptorSchema.extend({ mediaType: z.literal(MediaType.DockerConfig) }),
  layers: z.array(descriptorSchema),
});
export type DockerManifest = z.infer<typeof dockerManifestSchema>;

export const dockerManifestListSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MediaType.DockerManifestList),
  manifests: z.array(descriptorSchema.extend({ platform: platformSchema })),
});
export type DockerManifestList = z.infer<typeof dockerManifestListSchema>;

/** Go's json encodes nil slices and maps as null; Docker configs are full of them. */
const nullableStrings = z.array(z.string()).nullable();
const emptyObjectSet = z.record(z.string(), z.object({})).nullable();

/** https://github.com/opencontainers/image-spec/blob/main/config.md#properties (Docker adds Healthcheck, OnBuild, Shell). */
export const containerConfigSchema = z.looseObject({
  User: z.string().optional(),
  ExposedPorts: emptyObjectSet.optional(),
  Env: nullableStrings.optional(),
  Entrypoint: nullableStrings.optional(),
  Cmd: nullableStrings.optional(),
  Volumes: emptyObjectSet.optional(),
  WorkingDir: z.string().optional(),
  Labels: z.record(z.string(), z.string()).nullable().optional(),
  StopSignal: z.string().optional(),
  /** Docker extension; durations in nanoseconds. */
  Healthcheck: z
    .looseObject({
      Test: nullableStrings.optional(),
      Interval: z.number().int().nonnegative().optional(),
      Timeout: z.number().int().nonnegative().optional(),
      StartPeriod: z.number().int().nonnegative().optional(),
      StartInterval: z.number().int().nonnegative().optional(),
      Retries: z.number().int().nonnegative().optional(),
    })
    .optional(),
  OnBuild: nullableStrings.optional(),
  Shell: nullableStrings.optional(),
  ArgsEscaped: z.boolean().optional(),
});
export type ContainerConfig = z.infer<typeof containerConfigSchema>;

export const historySchema = z.looseObject({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
});
export type HistoryEntry = z.infer<typeof historySchema>;

/**
 * An image config. Loose objects: fields we do not model (`variant`, `os.version`,
 * `container_config`, `docker_version`...) survive a parse -> modify -> encode round trip, which
 * a commit relies on.
 */
export const imageConfigSchema = z.looseObject({
  created: z.string().optional(),
  author: z.string().optional(),
  architecture: z.string().min(1),
  os: z.string().min(1),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
  config: containerConfigSchema.optional(),
  rootfs: z.looseObject({
    type: z.literal('layers'),
    diff_ids: z.array(digestString),
  }),
  history: z.array(historySchema).optional(),
});
export type ImageConfig = z.infer<typeof imageConfigSchema>;
