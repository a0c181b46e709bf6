import { createReadStream } from 'node:fs';
import { lstat, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Digest } from '@stratum/contracts';
import type { LayerDescriptor } from '@stratum/images';
import { applyLayer, LayerError } from '@stratum/layers';
import {
  formatPlatform,
  isLayerMediaType,
  OciImageManifest,
  parseImageConfig,
  parseManifest,
  Platform,
  platformMatches,
  sha256Digest,
} from '@stratum/oci';
import { BuildError } from './build-errors';
import { ImageState } from './image-state';
import { StepHost } from './step-host';

/** Most bytes of a manifest, index or config read from an uploaded layout. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** Deepest nesting of indexes followed to the platform's manifest. */
const MAX_INDEX_DEPTH = 4;

/**
 * The image an `oci-layout://` named context names, from the layout tar the CLI uploaded
 * (`oci-layout`, `index.json`, `blobs/sha256/…` holding only that image): `root` (a manifest,
 * or an index from which the build's `platform` is taken, as buildx does), its config and
 * layers, each checked against its digest. The layers are stored in the blob store (the
 * image's layers must be there for a container to mount them and for the result to be pushed).
 * Keyed `image:<manifest digest>`, as an image FROM names.
 */
export async function ociLayoutState(
  host: StepHost,
  name: string,
  source: { digest: Digest; root: Digest },
  platform: Platform,
  line: number,
): Promise<ImageState> {
  const what = `named context ${name}`;
  const dir = join(host.jobDir, `oci-layout-${source.digest.slice(7, 19)}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    await applyLayer(await host.options.blobs.get(source.digest), dir, {
      devices: 'reject',
      kind: 'plain',
      ...(host.options.maxContextBytes !== undefined ? { maxBytes: host.options.maxContextBytes } : {}),
      ...(host.options.maxContextEntries !== undefined ? { maxEntries: host.options.maxContextEntries } : {}),
    }).catch((err: unknown) => {
      if (err instanceof LayerError || (err as { code?: string }).code === 'BLOB_UNKNOWN') {
        throw new BuildError(`${what}: ${(err as Error).message}`, line);
      }
      throw err;
    });
    const blobPath = (digest: string): string => {
      if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
        throw new BuildError(`${what}: ${digest} is not a sha256 digest`, line);
      }
      return join(dir, 'blobs', 'sha256', digest.slice(7));
    };
    const readJson = async (digest: string, kind: string): Promise<Buffer> => {
      const path = blobPath(digest);
      const st = await lstat(path).catch(() => null);
      if (st === null || !st.isFile()) {
        throw new BuildError(`${what}: the OCI layout has no ${kind} ${digest}`, line);
      }
      if (st.size > MAX_JSON_BYTES) {
        throw new BuildError(`${what}: ${kind} ${digest} is larger than ${MAX_JSON_BYTES} bytes`, line);
      }
      const bytes = await readFile(path);
      if (sha256Digest(bytes) !== digest) {
        throw new BuildError(`${what}: ${kind} ${digest} does not match its digest`, line);
      }
      return bytes;
    };

    let manifestDigest: string = source.root;
    let manifest: OciImageManifest | null = null;
    for (let depth = 0; manifest === null; depth++) {
      const parsed = parseManifest(await readJson(manifestDigest, 'manifest'));
      if (!parsed.ok) {
        throw new BuildError(`${what}: manifest ${manifestDigest}: ${parsed.message}`, line);
      }
      if (parsed.kind === 'oci-manifest' || parsed.kind === 'docker-manifest') {
        manifest = parsed.manifest as OciImageManifest;
        break;
      }
      if (depth >= MAX_INDEX_DEPTH) {
        throw new BuildError(`${what}: more than ${MAX_INDEX_DEPTH} levels of indexes`, line);
      }
      const entries = parsed.manifest.manifests as { digest: string; platform?: Platform }[];
      const entry = entries.find((m) => platformMatches(m.platform, platform));
      if (entry === undefined) {
        const has = entries.flatMap((m) => (m.platform !== undefined ? [formatPlatform(m.platform)] : []));
        throw new BuildError(
          `${what}: the index ${manifestDigest} has no image for the build's platform ${formatPlatform(platform)} (it has ${has.length > 0 ? has.join(', ') : 'no platform entries'})`,
          line,
        );
      }
      manifestDigest = entry.digest;
    }
    const configDigest = manifest.config.digest;
    const cfg = parseImageConfig(await readJson(configDigest, 'config'));
    if (!cfg.ok) {
      throw new BuildError(`${what}: config ${configDigest}: ${cfg.message}`, line);
    }
    const diffIds = cfg.config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new BuildError(
        `${what}: manifest ${manifestDigest} has ${manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`,
        line,
      );
    }
    const layers: LayerDescriptor[] = [];
    for (const [i, l] of manifest.layers.entries()) {
      if (!isLayerMediaType(l.mediaType)) {
        throw new BuildError(`${what}: layer ${l.digest} has media type ${l.mediaType}, not a layer`, line);
      }
      const path = blobPath(l.digest);
      if ((await lstat(path).catch(() => null))?.isFile() !== true) {
        throw new BuildError(`${what}: the OCI layout has no layer ${l.digest}`, line);
      }
      // Verified on the way in: a blob whose bytes do not hash to its name is refused.
      await host.options.blobs
        .put(createReadStream(path), { expectedDigest: l.digest as `sha256:${string}`, expectedSize: l.size })
        .catch((err: unknown) => {
          throw new BuildError(`${what}: layer ${l.digest}: ${(err as Error).message}`, line);
        });
      layers.push({ digest: l.digest, diffId: diffIds[i], size: l.size, mediaType: l.mediaType });
    }
    return { layers, config: cfg.config, cacheKey: `image:${manifestDigest}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
