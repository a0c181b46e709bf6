import { Readable } from 'node:stream';
import type { Digest, HistoryEntry, ImageConfig } from '@stratum/oci';
import { decompressed } from '@stratum/layers';
import { ByteReader, readTar } from '@stratum/tar';
import type { LayerDescriptor } from './image-types';

/** One row of an image's history, newest first, as `docker history` shows it. */
export interface ImageHistoryEntry {
  /** The image's config digest on the newest row (Docker's image ID); null elsewhere (`<missing>`). */
  readonly id: Digest | null;
  readonly created: string | null;
  readonly createdBy: string;
  /** Bytes of file content the step's layer holds; 0 for a step that made no layer. */
  readonly size: number;
  readonly comment: string;
  readonly emptyLayer: boolean;
  /** The layer blob of this step, when it made one. */
  readonly layer: Digest | null;
}

/**
 * A layer's size as Docker reports it in `docker history` / `docker image inspect`: the sum of
 * the sizes of the regular files in its tar (moby's archive.UnpackLayer adds up each header's
 * size while applying a pulled layer; directories, links and whiteouts count 0).
 */
export async function layerContentSize(blob: Readable): Promise<number> {
  const { stream, close } = await decompressed(blob);
  try {
    let size = 0;
    for await (const entry of readTar(new ByteReader(stream))) {
      size += entry.size; // 0 for anything but a regular file
    }
    return size;
  } finally {
    close();
  }
}

/**
 * Pairs the config's history entries with the layers (each entry without `empty_layer` took the
 * next layer, bottom up) and returns them newest first. A config without history (some imports)
 * gets one row per layer, as Docker shows it.
 */
export function historyRows(
  config: ImageConfig,
  configDigest: Digest,
  layers: readonly LayerDescriptor[],
  sizeOf: (layer: LayerDescriptor) => number,
): ImageHistoryEntry[] {
  const history: HistoryEntry[] =
    config.history !== undefined && config.history.length > 0
      ? config.history
      : layers.map(() => (config.created !== undefined ? { created: config.created } : {}));
  let next = 0;
  const rows = history.map((h): ImageHistoryEntry => {
    const empty = h.empty_layer === true || next >= layers.length;
    const layer = empty ? null : layers[next++];
    return {
      id: null,
      created: h.created ?? null,
      createdBy: h.created_by ?? '',
      size: layer === null ? 0 : sizeOf(layer),
      comment: h.comment ?? '',
      emptyLayer: empty,
      layer: layer === null ? null : layer.digest,
    };
  });
  rows.reverse();
  if (rows.length > 0) {
    rows[0] = { ...rows[0], id: configDigest };
  }
  return rows;
}
