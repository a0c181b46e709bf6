import { parseDigest } from './digest';
import { OciError } from './oci-error';

/** A parsed image reference such as `registry.example.com:5000/team/app:1.2@sha256:…`. */
export interface ImageReference {
  /** `host[:port]` when the reference names one, else null (the caller's default registry). */
  readonly registry: string | null;
  /** `path/to/name`, lowercase. Not prefixed with `library/` (see {@link withDefaultRegistry}). */
  readonly repository: string;
  /** The tag; `latest` when the reference has neither tag nor digest; null when only a digest is given. */
  readonly tag: string | null;
  readonly digest: string | null;
}

// The grammar of github.com/distribution/reference (regexp.go), which docker, podman and
// containerd share.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** Docker's NameTotalLengthMax: registry and path together. */
const NAME_MAX = 255;

function invalid(ref: string, why: string): OciError {
  return new OciError('REFERENCE_INVALID', `invalid reference ${JSON.stringify(ref)}: ${why}`);
}

/**
 * Parses an image reference with Docker's rules: the first path component is a registry when it
 * contains `.` or `:`, is `localhost`, or has upper case; a tag follows the last `:` after the last
 * `/`; `@digest` comes last; the tag defaults to `latest` when there is neither tag nor digest.
 * Throws {@link OciError} REFERENCE_INVALID.
 */
export function parseReference(ref: string): ImageReference {
  if (ref.length === 0) {
    throw invalid(ref, 'empty');
  }
  let rest = ref;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      throw invalid(ref, 'malformed digest');
    }
    try {
      parseDigest(digest);
    } catch (err) {
      throw invalid(ref, err instanceof Error ? err.message : 'malformed digest');
    }
  }

  let tag: string | null = null;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(ref, 'malformed tag');
    }
  }

  let registry: string | null = null;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (
      first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first !== first.toLowerCase()
    ) {
      registry = first;
      repository = rest.slice(slash + 1);
      if (!DOMAIN.test(registry)) {
        throw invalid(ref, 'malformed registry host');
      }
    }
  }
  if (repository.length === 0) {
    throw invalid(ref, 'missing repository name');
  }
  if (repository !== repository.toLowerCase()) {
    throw invalid(ref, 'repository name must be lowercase');
  }
  if (!repository.split('/').every((c) => PATH_COMPONENT.test(c))) {
    throw invalid(ref, 'malformed repository name');
  }
  if ((registry === null ? 0 : registry.length + 1) + repository.length > NAME_MAX) {
    throw invalid(ref, `name longer than ${NAME_MAX} characters`);
  }
  if (tag === null && digest === null) {
    tag = 'latest';
  }
  return { registry, repository, tag, digest };
}

/** Like {@link parseReference} but returns null instead of throwing. */
export function tryParseReference(ref: string): ImageReference | null {
  try {
    return parseReference(ref);
  } catch {
    return null;
  }
}

/** `registry/repository:tag@digest`, omitting the parts that are null. */
export function formatReference(ref: ImageReference): string {
  return (
    (ref.registry === null ? '' : `${ref.registry}/`) +
    ref.repository +
    (ref.tag === null ? '' : `:${ref.tag}`) +
    (ref.digest === null ? '' : `@${ref.digest}`)
  );
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/**
 * Fills in the registry: `defaultRegistry` when the reference names none; on Docker Hub, a
 * one-component repository gets Docker's implicit `library/` (`alpine` -> `docker.io/library/alpine`).
 */
export function withDefaultRegistry(
  ref: ImageReference,
  defaultRegistry = 'docker.io',
): ImageReference & { registry: string } {
  const registry = ref.registry ?? defaultRegistry;
  const hub = DOCKER_HUB.has(registry);
  const repository = hub && !ref.repository.includes('/') ? `library/${ref.repository}` : ref.repository;
  return { ...ref, registry: hub ? 'docker.io' : registry, repository };
}
