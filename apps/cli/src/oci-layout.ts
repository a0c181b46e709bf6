import { lstat, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  formatPlatform,
  parseManifest,
  parsePlatform,
  parsePlatformList,
  Platform,
  platformMatches,
} from '@stratum/oci';
import { ApiError } from './api-client';

/** `oci-layout://<dir>[:tag|@digest]`, read. */
export interface OciLayoutRef {
  readonly dir: string;
  readonly tag: string | null;
  readonly digest: string | null;
}

/** Most bytes of index.json, a manifest or an index read here. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** The annotation naming a manifest's tag in index.json (OCI image layout spec). */
const REF_NAME = 'org.opencontainers.image.ref.name';

/**
 * Reads buildx's `oci-layout://<path>[:tag|@sha256:digest]` (a path relative to `cwd` when
 * not absolute). https://docs.docker.com/reference/cli/docker/buildx/build/#source-oci-layout
 */
export function parseOciLayoutValue(value: string, cwd: string): OciLayoutRef {
  let rest = value.slice('oci-layout://'.length);
  let digest: string | null = null;
  let tag: string | null = null;
  const at = rest.lastIndexOf('@');
  if (at >= 0 && /^sha256:[0-9a-f]{64}$/.test(rest.slice(at + 1))) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  if (rest === '') {
    throw new ApiError(0, 'BAD_REQUEST', `${value}: expected oci-layout://<directory>[:tag|@sha256:digest]`);
  }
  return { dir: resolve(cwd, rest), tag: tag === '' ? null : tag, digest };
}

interface Descriptor {
  readonly mediaType?: string;
  readonly digest: string;
  readonly platform?: Platform;
  readonly annotations?: Record<string, string>;
}

/** What to upload of a layout: the root the build names, and every file it needs. */
export interface OciLayoutSelection {
  /** The manifest or index the context names. */
  readonly root: string;
  /** Layout-relative paths to send, parents before children. */
  readonly files: string[];
  /** Bytes of the blobs sent. */
  readonly bytes: number;
}

/**
 * Picks the image `ref` names in its layout and the blobs it needs: by digest, by tag (the
 * `org.opencontainers.image.ref.name` annotation of an index.json entry), or, with neither,
 * the layout's only image (else the tag `latest`, as buildx defaults). An index keeps the
 * images of `platforms` (`--platform`'s comma-separated list; each must be there), or all of them when none were asked for (the
 * worker then takes its own platform's). Errors name the layout and what is missing.
 */
export async function selectOciLayout(
  ref: OciLayoutRef,
  platforms: string | undefined,
): Promise<OciLayoutSelection> {
  const where = `oci-layout://${ref.dir}`;
  const fail = (why: string): never => {
    throw new ApiError(0, 'BAD_REQUEST', `--build-context ${where}: ${why}`);
  };
  const layoutFile = await readFile(join(ref.dir, 'oci-layout'), 'utf8').catch(() => null);
  if (layoutFile === null) {
    fail('no OCI image layout there (no oci-layout file)');
  }
  const readJsonFile = async (path: string, what: string): Promise<Buffer> => {
    const st = await lstat(path).catch(() => null);
    if (st === null || !st.isFile()) {
      return fail(`the layout has no ${what}`);
    }
    if (st.size > MAX_JSON_BYTES) {
      return fail(`${what} is larger than ${MAX_JSON_BYTES} bytes`);
    }
    return readFile(path);
  };
  const blobFile = (digest: string): string => {
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
      return fail(`${digest} is not a sha256 digest`);
    }
    return `blobs/sha256/${digest.slice('sha256:'.length)}`;
  };
  let index: { manifests?: Descriptor[] };
  try {
    index = JSON.parse((await readJsonFile(join(ref.dir, 'index.json'), 'index.json')).toString()) as {
      manifests?: Descriptor[];
    };
  } catch (err) {
    if (err instanceof ApiError) {
      throw err;
    }
    return fail('index.json is not JSON');
  }
  const entries = Array.isArray(index.manifests) ? index.manifests : [];
  let root: string;
  if (ref.digest !== null) {
    root = ref.digest;
  } else {
    const tag = ref.tag ?? (entries.length === 1 ? null : 'latest');
    const found = tag === null ? entries[0] : entries.find((d) => d.annotations?.[REF_NAME] === tag);
    if (found === undefined) {
      const tags = entries.flatMap((d) =>
        d.annotations?.[REF_NAME] !== undefined ? [d.annotations[REF_NAME]] : [],
      );
      return fail(
        `the tag "${tag ?? ''}" is not in index.json (${tags.length > 0 ? `it has ${tags.join(', ')}` : 'it names no tags'})`,
      );
    }
    root = found.digest;
  }

  const wanted = platforms === undefined ? [] : parsePlatformList(platforms).map((p) => parsePlatform(p));
  const files = new Set<string>(['oci-layout', 'index.json', 'blobs', 'blobs/sha256']);
  let bytes = 0;
  const addBlob = async (digest: string, what: string): Promise<void> => {
    const file = blobFile(digest);
    const st = await lstat(join(ref.dir, file)).catch(() => null);
    if (st === null || !st.isFile()) {
      fail(`the layout has no ${what} ${digest}`);
    }
    if (!files.has(file)) {
      files.add(file);
      bytes += st?.size ?? 0;
    }
  };
  const walk = async (digest: string, depth: number): Promise<void> => {
    if (depth > 4) {
      fail('more than 4 levels of indexes');
    }
    const body = await readJsonFile(join(ref.dir, blobFile(digest)), `manifest ${digest}`);
    await addBlob(digest, 'manifest');
    const parsed = parseManifest(body);
    if (!parsed.ok) {
      return fail(`manifest ${digest}: ${parsed.message}`);
    }
    if (parsed.kind === 'oci-manifest' || parsed.kind === 'docker-manifest') {
      const m = parsed.manifest as { config: Descriptor; layers: Descriptor[] };
      await addBlob(m.config.digest, 'config');
      for (const l of m.layers) {
        await addBlob(l.digest, 'layer');
      }
      return;
    }
    const children = parsed.manifest.manifests as Descriptor[];
    let keep = children;
    if (wanted.length > 0) {
      keep = [];
      for (const p of wanted) {
        const match = children.find((c) => platformMatches(c.platform, p));
        if (match === undefined) {
          const has = children.flatMap((c) => (c.platform !== undefined ? [formatPlatform(c.platform)] : []));
          fail(
            `the index ${digest} has no image for the build's platform ${formatPlatform(p)} (it has ${has.length > 0 ? has.join(', ') : 'no platform entries'})`,
          );
        } else if (!keep.includes(match)) {
          keep.push(match);
        }
      }
    }
    for (const c of keep) {
      await walk(c.digest, depth + 1);
    }
  };
  await walk(root, 0);
  return { root, files: [...files], bytes };
}
