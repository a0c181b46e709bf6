import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { BuildEngine, BuildReporter, BuildRunContext } from '@stratum/engine';
import { BuildJobData, Digest, StepRecord } from '@stratum/contracts';
import { applyLayer } from '@stratum/layers';
import { BlobDigest, BlobStore } from '@stratum/storage';
import { contextTar } from './build-context';

export interface EngineBuildResult {
  imageDigest: Digest;
  /** The step records as last reported, by index. */
  steps: StepRecord[];
  /** Every log text the build reported, in order. */
  logs: string;
}

export type EngineBuildOptions = Partial<
  Pick<BuildJobData, 'buildArgs' | 'noCache' | 'tags' | 'dockerfile' | 'buildId'>
> & {
  /** Build secrets by id (their values as text). */
  readonly secrets?: Record<string, string>;
  /** Private key files by ssh id (`RUN --mount=type=ssh`). */
  readonly ssh?: Record<string, (string | Buffer)[]>;
  /** The engine's hook for the written image (BuildRunContext.onImage). */
  readonly onImage?: BuildRunContext['onImage'];
};

let seq = 0;

/**
 * Runs one build straight on an engine (no queue, no API): the context (files, or a tar) is put
 * in `blobs` and the engine reports to an in-memory reporter.
 */
export async function buildWithEngine(
  engine: BuildEngine,
  blobs: BlobStore,
  files: Record<string, string | Buffer> | Buffer,
  opts: EngineBuildOptions = {},
): Promise<EngineBuildResult> {
  const tar = Buffer.isBuffer(files) ? files : await contextTar(files);
  const put = await blobs.put(Readable.from([tar]));
  const steps = new Map<number, StepRecord>();
  let logs = '';
  const reporter: BuildReporter = {
    log: (_step, _stream, text) => {
      logs += text;
    },
    step: async (s) => {
      steps.set(s.index, { ...s });
    },
  };
  seq += 1;
  const out = await engine.build(
    {
      buildId: opts.buildId ?? `b${seq}-${Date.now()}`,
      contextDigest: put.digest,
      dockerfile: opts.dockerfile ?? 'Dockerfile',
      tags: opts.tags ?? [`it/build:${seq}`],
      buildArgs: opts.buildArgs ?? {},
      target: null,
      noCache: opts.noCache ?? false,
    },
    {
      signal: new AbortController().signal,
      reporter,
      ...(opts.secrets !== undefined
        ? { secrets: new Map(Object.entries(opts.secrets).map(([k, v]) => [k, Buffer.from(v)])) }
        : {}),
      ...(opts.ssh !== undefined
        ? { ssh: new Map(Object.entries(opts.ssh).map(([k, v]) => [k, v.map((b) => Buffer.from(b))])) }
        : {}),
      ...(opts.onImage !== undefined ? { onImage: opts.onImage } : {}),
    },
  );
  return { imageDigest: out.imageDigest, steps: [...steps.values()].sort((a, b) => a.index - b.index), logs };
}

/** The image's filesystem, all layers applied in order, in a new directory below `parent`. */
export async function unpackImage(
  engine: BuildEngine,
  blobs: BlobStore,
  digest: Digest,
  parent: string,
): Promise<string> {
  const image = await engine.images.load(null, digest);
  const dir = await mkdtemp(join(parent, 'rootfs-'));
  for (const l of image.layers) {
    await applyLayer(await blobs.get(l.digest as BlobDigest), dir);
  }
  return dir;
}
