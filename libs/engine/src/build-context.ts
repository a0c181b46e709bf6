import type { Stats } from 'node:fs';
import { resolve } from 'node:path';
import { Digest, StratumError } from '@stratum/contracts';
import { applyLayer, type FileContentDigest, knownContentDigest, LayerError } from '@stratum/layers';
import { BlobStore } from '@stratum/storage';
import { applyDockerignore } from './context-filter';

/**
 * One build's context. The blob is extracted (and `.dockerignore` applied) only when a step
 * needs its files: a build whose Dockerfile and source digests are memoized for this blob
 * (see `BuildCacheIndex.getMemo`) and whose steps are all cached never unpacks it.
 */
export class BuildContext {
  private extracted: Promise<void> | null = null;
  /** Content digests of the files as extracted: a COPY's cache key need not read them again. */
  private readonly digests = new Map<string, FileContentDigest>();

  constructor(
    private readonly blobs: BlobStore,
    readonly digest: Digest,
    /** Where the context is extracted to. */
    readonly dir: string,
    /** The Dockerfile's path in the context (it decides which ignore file applies). */
    private readonly dockerfile: string,
    private readonly log: (text: string) => void,
    /** Unpacked size limit (MAX_CONTEXT_BYTES): a context named by digest was not checked here. */
    private readonly maxBytes?: number,
    /** Entry limit (MAX_CONTEXT_ENTRIES), for the same reason. */
    private readonly maxEntries?: number,
  ) {}

  /** Extracts the context into {@link dir} and applies its ignore file, once. */
  materialize(): Promise<void> {
    this.extracted ??= (async () => {
      this.log(`loading build context ${this.digest}\n`);
      // A context is a plain archive of files to copy from, not a layer: `.wh.*` names are
      // ordinary files; no device nodes (and nothing outside the dir), as the API checked.
      try {
        await applyLayer(await this.blobs.get(this.digest), this.dir, {
          devices: 'reject',
          kind: 'plain',
          contentDigests: this.digests,
          ...(this.maxBytes !== undefined ? { maxBytes: this.maxBytes } : {}),
          ...(this.maxEntries !== undefined ? { maxEntries: this.maxEntries } : {}),
        });
      } catch (err) {
        if (err instanceof LayerError && err.code === 'LAYER_TOO_MANY_ENTRIES') {
          // CONTEXT_TOO_LARGE: a user error (never retried), 413 like the API's own check.
          throw new StratumError(
            'CONTEXT_TOO_LARGE',
            `build context holds more than ${this.maxEntries ?? 0} entries (MAX_CONTEXT_ENTRIES)`,
          );
        }
        throw err;
      }
      const ignored = await applyDockerignore(this.dir, this.dockerfile, this.log);
      if (ignored > 0) {
        this.log(`.dockerignore: left out ${ignored} path(s) of the context\n`);
      }
    })();
    return this.extracted;
  }

  /**
   * The sha256 (hex) of the extracted file at host path `path` that `st` describes, as computed
   * while extracting it; undefined for a file not extracted here or changed since (size or mtime).
   */
  readonly knownDigest = (path: string, st: Stats): string | undefined => {
    const root = `${resolve(this.dir)}/`;
    return path.startsWith(root) ? knownContentDigest(this.digests, path.slice(root.length), st) : undefined;
  };
}
