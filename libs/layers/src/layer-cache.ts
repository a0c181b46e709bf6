import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isSha256Digest } from '@stratum/oci';
import { applyLayer } from './layer-apply';
import { LayerError } from './layer-error';

/** A cached, extracted layer. */
export interface CachedLayer {
  diffId: string;
  /** Directory usable as an overlay lowerdir (whiteouts in overlay form). */
  path: string;
  /** Bytes of file content in the layer. */
  size: number;
}

/** Layers pinned for a mount; hand back with {@link LayerCache.release}. */
export interface LayerLease {
  readonly id: string;
  /** As passed to acquire: bottom layer first (config rootfs.diff_ids order). */
  readonly diffIds: readonly string[];
  /** The layer dirs topmost first: pass as `lowerDirs` to mountOverlay. */
  readonly lowerDirs: readonly string[];
}

/** Result of {@link LayerCache.evict}. */
export interface EvictResult {
  evicted: string[];
  freedBytes: number;
  /** Bytes still cached after eviction. */
  totalBytes: number;
}

interface Entry {
  diffId: string;
  size: number;
  lastUsed: number;
  /** The lastUsed its meta file holds. */
  storedLastUsed: number;
  refs: number;
}

/**
 * How stale a layer's stored last use may get before a lease writes it again. Each write is a
 * new file renamed over the old one, and a step leased every layer of its image: a step on 8
 * layers made 8 files (and freed 8 inodes), where only the eviction order after a restart
 * reads them, and a minute's precision serves that.
 */
const LAST_USED_PERSIST_MS = 60_000;

interface Meta {
  diffId: string;
  size: number;
  lastUsed: number;
}

function hexOf(diffId: string): string {
  if (!isSha256Digest(diffId)) {
    throw new LayerError('LAYER_INVALID_ARGUMENT', `not a sha256 diffID: ${JSON.stringify(diffId)}`);
  }
  return diffId.slice('sha256:'.length);
}

/**
 * The host's cache of extracted layers, keyed by diffID, laid out as
 * `root/layers/<hex>/` (content), `root/meta/<hex>.json` (size, last use) and `root/tmp/`
 * (extractions in progress, wiped at start). Layers are extracted with overlay-form
 * whiteouts so each directory can be an overlay lowerdir; treat them as read-only.
 * One cache instance per root per host (the worker); concurrent `ensure` calls for the
 * same layer share one extraction.
 */
export class LayerCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<CachedLayer>>();
  private readonly leases = new Map<string, LayerLease>();
  private ready?: Promise<void>;
  private clock = 0;

  constructor(readonly root: string) {}

  private dirOf(hex: string): string {
    return join(this.root, 'layers', hex);
  }

  private metaOf(hex: string): string {
    return join(this.root, 'meta', `${hex}.json`);
  }

  /** Monotonic "last used" stamp: wall-clock ms, strictly increasing within the process. */
  private now(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  /** Loads the index from disk and clears leftovers of interrupted extractions. Idempotent. */
  init(): Promise<void> {
    this.ready ??= (async (): Promise<void> => {
      await rm(join(this.root, 'tmp'), { recursive: true, force: true });
      await Promise.all(['layers', 'meta', 'tmp'].map((d) => mkdir(join(this.root, d), { recursive: true })));
      const metas = new Set(await readdir(join(this.root, 'meta')));
      for (const hex of await readdir(join(this.root, 'layers'))) {
        if (!isSha256Digest(`sha256:${hex}`)) {
          continue;
        }
        if (!metas.has(`${hex}.json`)) {
          // Renamed in but metadata never written: size unknown, so drop it.
          await rm(this.dirOf(hex), { recursive: true, force: true });
          continue;
        }
        const meta = JSON.parse(await readFile(this.metaOf(hex), 'utf8')) as Meta;
        this.entries.set(hex, {
          diffId: `sha256:${hex}`,
          size: meta.size,
          lastUsed: meta.lastUsed,
          storedLastUsed: meta.lastUsed,
          refs: 0,
        });
        this.clock = Math.max(this.clock, meta.lastUsed);
      }
    })();
    return this.ready;
  }

  private async writeMeta(hex: string, e: Entry): Promise<void> {
    const tmp = `${this.metaOf(hex)}.${randomUUID()}.tmp`;
    const lastUsed = e.lastUsed;
    await writeFile(tmp, JSON.stringify({ diffId: e.diffId, size: e.size, lastUsed } satisfies Meta));
    await rename(tmp, this.metaOf(hex));
    e.storedLastUsed = Math.max(e.storedLastUsed, lastUsed);
  }

  /** The cached layer, or undefined. */
  async get(diffId: string): Promise<CachedLayer | undefined> {
    await this.init();
    const hex = hexOf(diffId);
    const e = this.entries.get(hex);
    return e ? { diffId, path: this.dirOf(hex), size: e.size } : undefined;
  }

  /**
   * Makes sure the layer is extracted, calling `open` for its blob (any compression) only
   * when it is not. Extracts into `root/tmp`, checks the uncompressed sha256 against
   * `diffId` (LAYER_DIGEST_MISMATCH otherwise) and renames into place atomically.
   */
  async ensure(diffId: string, open: () => Promise<Readable>): Promise<CachedLayer> {
    await this.init();
    const hex = hexOf(diffId);
    const existing = this.entries.get(hex);
    if (existing) {
      existing.lastUsed = this.now();
      return { diffId, path: this.dirOf(hex), size: existing.size };
    }
    let p = this.inflight.get(hex);
    if (!p) {
      p = this.extract(diffId, hex, open).finally(() => this.inflight.delete(hex));
      this.inflight.set(hex, p);
    }
    return p;
  }

  private async extract(diffId: string, hex: string, open: () => Promise<Readable>): Promise<CachedLayer> {
    const tmp = await mkdtemp(join(this.root, 'tmp', `${hex.slice(0, 12)}-`));
    try {
      const stats = await applyLayer(await open(), tmp, { whiteoutFormat: 'overlay' });
      if (stats.diffId !== diffId) {
        throw new LayerError(
          'LAYER_DIGEST_MISMATCH',
          `layer content hashes to ${stats.diffId}, expected ${diffId}`,
        );
      }
      const entry: Entry = { diffId, size: stats.bytes, lastUsed: this.now(), storedLastUsed: 0, refs: 0 };
      await this.writeMeta(hex, entry);
      try {
        await rename(tmp, this.dirOf(hex));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') {
          throw e;
        }
        // Someone else put it there first: theirs is as good as ours.
      }
      this.entries.set(hex, entry);
      return { diffId, path: this.dirOf(hex), size: entry.size };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Takes ownership of a directory that already is the layer's extracted form in overlay
   * format — typically the upper dir a snapshot was just taken of — instead of extracting the
   * blob again. The directory is moved (same filesystem), so the caller must not use it after.
   * Returns undefined when it cannot be moved here (another filesystem); the caller keeps it.
   */
  async adopt(diffId: string, dir: string, size: number): Promise<CachedLayer | undefined> {
    await this.init();
    const hex = hexOf(diffId);
    const existing = this.entries.get(hex);
    if (existing) {
      existing.lastUsed = this.now();
      return { diffId, path: this.dirOf(hex), size: existing.size };
    }
    const entry: Entry = { diffId, size, lastUsed: this.now(), storedLastUsed: 0, refs: 0 };
    await this.writeMeta(hex, entry);
    try {
      await rename(dir, this.dirOf(hex));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EXDEV') {
        await rm(this.metaOf(hex), { force: true });
        return undefined;
      }
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') {
        throw e;
      }
    }
    this.entries.set(hex, entry);
    return { diffId, path: this.dirOf(hex), size };
  }

  /**
   * Pins layers (bottom first, as in rootfs.diff_ids) so eviction leaves them alone while a
   * container uses them. Throws LAYER_NOT_CACHED when one is missing: `ensure` it first.
   */
  async acquire(diffIds: readonly string[]): Promise<LayerLease> {
    await this.init();
    const hexes = diffIds.map(hexOf);
    const missing = diffIds.filter((_, i) => !this.entries.has(hexes[i]));
    if (missing.length > 0) {
      throw new LayerError('LAYER_NOT_CACHED', `layers not in the cache: ${missing.join(', ')}`);
    }
    const stamp = this.now();
    for (const hex of hexes) {
      const e = this.entries.get(hex) as Entry;
      e.refs++;
      e.lastUsed = stamp;
    }
    const stale = [...new Set(hexes)].filter(
      (hex) => stamp - (this.entries.get(hex) as Entry).storedLastUsed >= LAST_USED_PERSIST_MS,
    );
    await Promise.all(stale.map((hex) => this.writeMeta(hex, this.entries.get(hex) as Entry)));
    const lease: LayerLease = {
      id: randomUUID(),
      diffIds: [...diffIds],
      lowerDirs: [...hexes].reverse().map((hex) => this.dirOf(hex)),
    };
    this.leases.set(lease.id, lease);
    return lease;
  }

  /** Unpins a lease's layers. Releasing twice is a no-op. */
  release(lease: LayerLease): void {
    if (!this.leases.delete(lease.id)) {
      return;
    }
    for (const d of lease.diffIds) {
      const e = this.entries.get(hexOf(d));
      if (e && e.refs > 0) {
        e.refs--;
      }
    }
  }

  /** Bytes of all cached layers. */
  totalBytes(): number {
    let total = 0;
    for (const e of this.entries.values()) {
      total += e.size;
    }
    return total;
  }

  /**
   * Removes least-recently-used unpinned layers until at most `maxBytes` are cached (pinned
   * layers are never removed, so the result may stay above the limit).
   */
  async evict(options: { maxBytes: number }): Promise<EvictResult> {
    await this.init();
    let total = this.totalBytes();
    const victims: string[] = [];
    // Decide synchronously, so no acquire() can slip in between choice and removal.
    const candidates = [...this.entries.entries()]
      .filter(([, e]) => e.refs === 0)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    let freed = 0;
    for (const [hex, e] of candidates) {
      if (total <= options.maxBytes) {
        break;
      }
      this.entries.delete(hex);
      total -= e.size;
      freed += e.size;
      victims.push(hex);
    }
    for (const hex of victims) {
      // Rename first so a crash mid-delete leaves only tmp/ garbage, wiped at start.
      const trash = join(this.root, 'tmp', `evict-${hex.slice(0, 12)}-${randomUUID()}`);
      await rm(this.metaOf(hex), { force: true });
      await rename(this.dirOf(hex), trash);
      await rm(trash, { recursive: true, force: true });
    }
    return { evicted: victims.map((h) => `sha256:${h}`), freedBytes: freed, totalBytes: total };
  }
}
