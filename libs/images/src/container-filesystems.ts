import { mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { nameBeneath } from '@stratum/confine';
import { StratumError } from '@stratum/contracts';
import {
  LayerCache,
  LayerLease,
  mountOverlay,
  overlayChanges,
  unchangedDirectories,
  type OverlayChanges,
  type OverlayChangesOptions,
  type IdMap,
  snapshotDirectory,
  SnapshotOptions,
  unmountOverlay,
} from '@stratum/layers';
import { BlobDigest, BlobStore } from '@stratum/storage';
import { ImageService } from './image.service';
import { LayerDescriptor } from './image-types';

/** A container's filesystem: the image's layers read-only below, one writable upper dir. */
export interface ContainerFs {
  readonly id: string;
  readonly dir: string;
  readonly upper: string;
  readonly work: string;
  /** The root the container sees (overlay mount point). */
  readonly merged: string;
  readonly layers: readonly LayerDescriptor[];
  /** A throwaway build-step filesystem: mounted `volatile` (see OverlayMountSpec). */
  readonly volatile?: boolean;
  /**
   * Its layers are seen through this uid range (idmapped, see OverlayMountSpec): for a step in
   * that user namespace. The host then sees in-image owners shifted and cannot write as root.
   */
  readonly idmap?: IdMap;
}

export interface ContainerFilesystemsOptions {
  readonly blobs: BlobStore;
  readonly images: ImageService;
  readonly cache: LayerCache;
  /** Parent of every container's dir (on the same filesystem as the cache). */
  readonly root: string;
}

/**
 * Creates container filesystems from image layers: each layer is extracted once per host into
 * the {@link LayerCache} and shared read-only as an overlay lowerdir; a container owns only its
 * upper dir, so two containers of one image never see each other's changes.
 */
export class ContainerFilesystems {
  private readonly leases = new Map<string, LayerLease>();
  /** Each mounted container's lower dirs, topmost first (leased and frozen alike). */
  private readonly lowers = new Map<string, readonly string[]>();
  /** Layers made here and not yet in the cache: their frozen upper dirs, by (provisional) diffId. */
  private readonly frozen = new Map<string, string>();

  constructor(private readonly options: ContainerFilesystemsOptions) {}

  /**
   * Lets containers created here mount `dir` (a step's unmounted upper dir, never written
   * again) wherever `diffId` is one of their layers, instead of the layer cache's extraction:
   * a build's next step starts on a step's result while its layer blob is still being made.
   */
  useFrozenLayer(diffId: string, dir: string): void {
    this.frozen.set(diffId, dir);
  }

  /** Forgets {@link useFrozenLayer}'s dir for `diffId` (once the cache holds the layer). */
  forgetFrozenLayer(diffId: string): void {
    this.frozen.delete(diffId);
  }

  /** The filesystem of container `id` (whether or not it is mounted). */
  describe(id: string, layers: readonly LayerDescriptor[]): ContainerFs {
    // One readable component below the root (PATH_INVALID otherwise): ids come from builds and API users.
    const dir = nameBeneath(this.options.root, id, 'container id');
    return {
      id,
      dir,
      upper: join(dir, 'upper'),
      work: join(dir, 'work'),
      merged: join(dir, 'merged'),
      layers,
    };
  }

  /**
   * Makes the dirs and mounts the overlay; extracts any layer the host does not have yet.
   * `volatile`: a build step's filesystem, snapshotted and removed, never kept across a crash.
   * `idmap`: see {@link ContainerFs.idmap}.
   */
  async create(
    id: string,
    layers: readonly LayerDescriptor[],
    options: { volatile?: boolean; idmap?: IdMap } = {},
  ): Promise<ContainerFs> {
    const fs = {
      ...this.describe(id, layers),
      volatile: options.volatile === true,
      ...(options.idmap !== undefined ? { idmap: options.idmap } : {}),
    };
    mkdirSync(fs.upper, { recursive: true });
    await this.mount(fs);
    return fs;
  }

  /**
   * Leases `layers` from the cache (extracting any the host does not have yet) and gives their
   * dirs, topmost first: a frozen layer's upper dir where there is one.
   */
  private async leaseLowers(
    layers: readonly LayerDescriptor[],
  ): Promise<{ lease: LayerLease; lowerDirs: string[] }> {
    const { cache, blobs } = this.options;
    const cached = layers.filter((l) => !this.frozen.has(l.diffId));
    // An eviction may remove a layer between ensure() and acquire(): ensure again and retry.
    let lease;
    for (let attempt = 1; ; attempt++) {
      await Promise.all(cached.map((l) => cache.ensure(l.diffId, () => blobs.get(l.digest as BlobDigest))));
      try {
        lease = await cache.acquire(cached.map((l) => l.diffId));
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== 'LAYER_NOT_CACHED' || attempt >= 3) {
          throw err;
        }
      }
    }
    // topmost first, as the lease gives its own
    const leased = [...lease.lowerDirs];
    const lowerDirs = [...layers]
      .reverse()
      .map((l) => this.frozen.get(l.diffId) ?? (leased.shift() as string));
    return { lease, lowerDirs };
  }

  /**
   * Whether `path` (absolute, normalized, in-image) is a directory in the image `layers` make,
   * told without mounting them: true only when the topmost layer holding anything at the
   * path's first component holds every component as a real directory (no symlink, no
   * whiteout). No layer above it touches the path then, and its own opaque markers hide only
   * what lies below it. Anything else (a symlink, a path split across layers, where an opaque
   * directory would decide) gives null: look through a mount.
   */
  async isDirectory(layers: readonly LayerDescriptor[], path: string): Promise<true | null> {
    const parts = path.split('/').filter(Boolean);
    if (parts.length === 0 || parts.some((p) => p === '..' || p === '.')) {
      return null;
    }
    const { lease, lowerDirs } = await this.leaseLowers(layers);
    try {
      for (const dir of lowerDirs) {
        const top = await lstat(join(dir, parts[0])).catch(() => null);
        if (top === null) {
          continue;
        }
        let cur = dir;
        for (const part of parts) {
          cur = join(cur, part);
          const st = part === parts[0] ? top : await lstat(cur).catch(() => null);
          if (st === null || !st.isDirectory()) {
            return null;
          }
        }
        return true;
      }
      return null;
    } finally {
      this.options.cache.release(lease);
    }
  }

  /** Mounts an existing container's filesystem (its upper dir keeps earlier changes). */
  async mount(fs: ContainerFs): Promise<void> {
    const { cache } = this.options;
    const { lease, lowerDirs } = await this.leaseLowers(fs.layers);
    try {
      // synchronous: a few microseconds each, not a thread-pool round trip (see mountOverlay)
      mkdirSync(fs.upper, { recursive: true });
      rmSync(fs.work, { recursive: true, force: true }); // overlay's own scratch: a few entries
      mkdirSync(fs.work, { recursive: true });
      mkdirSync(fs.merged, { recursive: true });
      await mountOverlay({
        lowerDirs,
        upperDir: fs.upper,
        workDir: fs.work,
        target: fs.merged,
        volatile: fs.volatile === true,
        ...(fs.idmap !== undefined ? { idmap: fs.idmap } : {}),
      });
      this.leases.set(fs.merged, lease);
      this.lowers.set(fs.merged, lowerDirs);
    } catch (err) {
      cache.release(lease);
      throw err;
    }
  }

  async unmount(fs: ContainerFs): Promise<void> {
    await unmountOverlay(fs.merged, { lazy: true });
    const lease = this.leases.get(fs.merged);
    if (lease !== undefined) {
      this.options.cache.release(lease);
      this.leases.delete(fs.merged);
    }
    this.lowers.delete(fs.merged);
    rmSync(fs.work, { recursive: true, force: true }); // overlay's own scratch: a few entries
  }

  /**
   * `docker diff` of a container whose filesystem this process mounted (the layers below are
   * its lease's dirs): what its upper dir adds, changes and deletes.
   */
  async changes(fs: ContainerFs, options: OverlayChangesOptions = {}): Promise<OverlayChanges> {
    const lowerDirs = this.lowers.get(fs.merged);
    if (lowerDirs === undefined) {
      throw new StratumError('CONTAINER_STATE', `container ${fs.id} is not mounted here`);
    }
    return overlayChanges(fs.upper, lowerDirs, options);
  }

  /**
   * Unmounts a build step's filesystem, leaving out of its upper dir the directories overlay's
   * copy-up alone put there: a runtime's mountpoint stub (`/etc/hosts`, `/etc/resolv.conf`,
   * which the network modes bind in) is created and removed again, but its parent stays copied
   * up with a new mtime and would reach every RUN layer as a bare `/etc`. Docker keeps such stubs
   * in an init layer below the container's. A directory is left out when `docker diff` rules
   * (moby's: a directory's mtime is not a change) see no change in it or below it; it is
   * decided while mounted (the layers below are leased) and removed after the unmount, never
   * under a live overlay.
   */
  async unmountPruned(fs: ContainerFs): Promise<void> {
    let copiedUp: string[] = [];
    const lowerDirs = this.lowers.get(fs.merged);
    if (lowerDirs !== undefined) {
      copiedUp = await unchangedDirectories(fs.upper, lowerDirs);
    }
    await this.unmount(fs);
    // deepest first; rmdir refuses a directory that still holds anything (then it stays)
    for (const dir of copiedUp.sort().reverse()) {
      try {
        rmdirSync(join(fs.upper, dir));
      } catch {
        // not empty after all: it stays
      }
    }
  }

  /**
   * Turns the upper dir into a layer blob (walking the upper dir only, so the cost follows
   * the bytes changed). Call with the overlay unmounted or the container stopped.
   */
  async snapshot(fs: ContainerFs, options: SnapshotOptions = {}): Promise<LayerDescriptor> {
    return this.options.images.storeLayer(snapshotDirectory(fs.upper, options));
  }

  /**
   * Hands the (unmounted) upper dir to the layer cache as the extracted form of `layer`, which
   * was just snapshotted from it: the next step mounts it as a lowerdir without extracting the
   * blob again. The container cannot be mounted afterwards; remove it.
   */
  async adoptUpper(fs: ContainerFs, layer: LayerDescriptor): Promise<void> {
    await this.options.cache.adopt(layer.diffId, fs.upper, layer.size);
  }

  /** Unmounts and deletes everything of the container. */
  async remove(fs: ContainerFs): Promise<void> {
    await this.unmount(fs);
    await rm(fs.dir, { recursive: true, force: true });
  }
}
