import { z } from 'zod';
import { sha256Digest, Sha256Digest } from './digest';
import { MediaType, normalizeMediaType } from './media-types';
import {
  Descriptor,
  DockerManifest,
  dockerManifestListSchema,
  DockerManifestList,
  dockerManifestSchema,
  ImageConfig,
  imageConfigSchema,
  OciImageIndex,
  ociImageIndexSchema,
  OciImageManifest,
  ociImageManifestSchema,
} from './schemas';

/** Common to every successfully parsed manifest: the exact bytes' digest and size. */
interface ParsedCommon {
  readonly ok: true;
  /** sha256 of the bytes as received (what a registry addresses the manifest by). */
  readonly digest: Sha256Digest;
  readonly size: number;
}

/** A validated manifest of one of the four kinds, discriminated by `kind`. */
export type ParsedManifest =
  | (ParsedCommon & {
      kind: 'oci-manifest';
      mediaType: typeof MediaType.OciManifest;
      manifest: OciImageManifest;
    })
  | (ParsedCommon & { kind: 'oci-index'; mediaType: typeof MediaType.OciIndex; manifest: OciImageIndex })
  | (ParsedCommon & {
      kind: 'docker-manifest';
      mediaType: typeof MediaType.DockerManifest;
      manifest: DockerManifest;
    })
  | (ParsedCommon & {
      kind: 'docker-manifest-list';
      mediaType: typeof MediaType.DockerManifestList;
      manifest: DockerManifestList;
    });

/** Why a manifest was refused; MANIFEST_INVALID and MANIFEST_UNSUPPORTED are distribution-spec codes. */
export interface ManifestRejection {
  readonly ok: false;
  readonly code: 'MANIFEST_INVALID' | 'MANIFEST_UNSUPPORTED';
  readonly message: string;
  /** Schema issues, `path: message`, when the JSON had the wrong shape. */
  readonly issues: string[];
}

export type ParseManifestResult = ParsedManifest | ManifestRejection;

function reject(code: ManifestRejection['code'], message: string, issues: string[] = []): ManifestRejection {
  return { ok: false, code, message, issues };
}

function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

function parseJson(
  bytes: Uint8Array | string,
): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    const text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, message: `not UTF-8 JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/**
 * Validates a manifest at the registry boundary and tells which kind it is.
 *
 * The kind comes from the document's `mediaType` field, else from `mediaTypeHint` (the request's
 * Content-Type), else from its shape (`manifests` -> OCI index, `config` + `layers` -> OCI
 * manifest), as the OCI distribution spec allows:
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-manifests
 * A field that disagrees with the hint is refused (MANIFEST_INVALID); Docker schema 1 and unknown
 * media types are MANIFEST_UNSUPPORTED. Never throws for bad input.
 */
export function parseManifest(
  bytes: Uint8Array | string,
  mediaTypeHint?: string | null,
): ParseManifestResult {
  const json = parseJson(bytes);
  if (!json.ok) {
    return reject('MANIFEST_INVALID', json.message);
  }
  const doc = json.value;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return reject('MANIFEST_INVALID', 'a manifest must be a JSON object');
  }
  const record = doc as Record<string, unknown>;
  if (record.schemaVersion === 1) {
    return reject('MANIFEST_UNSUPPORTED', 'Docker image manifest schema 1 is not supported');
  }
  const field = typeof record.mediaType === 'string' ? normalizeMediaType(record.mediaType) : undefined;
  const hint =
    mediaTypeHint !== undefined && mediaTypeHint !== null && mediaTypeHint.trim() !== ''
      ? normalizeMediaType(mediaTypeHint)
      : undefined;
  // Generic JSON content types say nothing about the kind.
  const usefulHint = hint === 'application/json' || hint === 'application/octet-stream' ? undefined : hint;
  if (field !== undefined && usefulHint !== undefined && field !== usefulHint) {
    return reject('MANIFEST_INVALID', `mediaType ${field} does not match Content-Type ${usefulHint}`);
  }
  const mediaType =
    field ??
    usefulHint ??
    ('manifests' in record ? MediaType.OciIndex : 'config' in record ? MediaType.OciManifest : undefined);
  if (mediaType === undefined) {
    return reject('MANIFEST_INVALID', 'cannot tell the manifest kind: no mediaType, config or manifests');
  }

  const common = {
    ok: true as const,
    digest: sha256Digest(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes),
    size: typeof bytes === 'string' ? Buffer.byteLength(bytes, 'utf8') : bytes.byteLength,
  };
  switch (mediaType) {
    case MediaType.OciManifest: {
      const r = ociImageManifestSchema.safeParse(doc);
      return r.success
        ? { ...common, kind: 'oci-manifest', mediaType, manifest: r.data }
        : reject('MANIFEST_INVALID', 'invalid OCI image manifest', describeIssues(r.error));
    }
    case MediaType.OciIndex: {
      const r = ociImageIndexSchema.safeParse(doc);
      return r.success
        ? { ...common, kind: 'oci-index', mediaType, manifest: r.data }
        : reject('MANIFEST_INVALID', 'invalid OCI image index', describeIssues(r.error));
    }
    case MediaType.DockerManifest: {
      const r = dockerManifestSchema.safeParse({ ...record, mediaType });
      return r.success
        ? { ...common, kind: 'docker-manifest', mediaType, manifest: r.data }
        : reject('MANIFEST_INVALID', 'invalid Docker image manifest (schema 2)', describeIssues(r.error));
    }
    case MediaType.DockerManifestList: {
      const r = dockerManifestListSchema.safeParse({ ...record, mediaType });
      return r.success
        ? { ...common, kind: 'docker-manifest-list', mediaType, manifest: r.data }
        : reject('MANIFEST_INVALID', 'invalid Docker manifest list', describeIssues(r.error));
    }
    default:
      return reject('MANIFEST_UNSUPPORTED', `unsupported manifest media type: ${mediaType}`);
  }
}

/**
 * Descriptors a manifest points at, i.e. what must exist before it is accepted:
 * config + layers of an image manifest, child manifests of an index, and the `subject` if any.
 */
export function manifestReferences(parsed: ParsedManifest): { blobs: Descriptor[]; manifests: Descriptor[] } {
  switch (parsed.kind) {
    case 'oci-manifest':
      return {
        blobs: [parsed.manifest.config, ...parsed.manifest.layers],
        manifests: parsed.manifest.subject ? [parsed.manifest.subject] : [],
      };
    case 'docker-manifest':
      return { blobs: [parsed.manifest.config, ...parsed.manifest.layers], manifests: [] };
    case 'oci-index':
      return {
        blobs: [],
        manifests: [
          ...parsed.manifest.manifests,
          ...(parsed.manifest.subject ? [parsed.manifest.subject] : []),
        ],
      };
    case 'docker-manifest-list':
      return { blobs: [], manifests: parsed.manifest.manifests };
  }
}

/** Result of {@link parseImageConfig}. */
export type ParseImageConfigResult =
  | { readonly ok: true; readonly config: ImageConfig }
  | { readonly ok: false; readonly message: string; readonly issues: string[] };

/**
 * Validates an image config blob (OCI or Docker, same shape):
 * https://github.com/opencontainers/image-spec/blob/main/config.md
 */
export function parseImageConfig(bytes: Uint8Array | string): ParseImageConfigResult {
  const json = parseJson(bytes);
  if (!json.ok) {
    return { ok: false, message: json.message, issues: [] };
  }
  const r = imageConfigSchema.safeParse(json.value);
  return r.success
    ? { ok: true, config: r.data }
    : { ok: false, message: 'invalid image config', issues: describeIssues(r.error) };
}
