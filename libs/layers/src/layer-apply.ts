import { createHash, type Hash } from 'node:crypto';
import { chmod, lchown, link, lstat, lutimes, open, readdir, realpath, rm, utimes } from 'node:fs/promises';
import {
  chmodSync,
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import {
  ArchiveRules,
  ByteReader,
  cleanEntryPath,
  readTar,
  TarError,
  whiteoutOf,
  type TarEntry,
  type Whiteout,
} from '@stratum/tar';
import { mknod, setXattr } from './fs-attrs';
import { decompressed, type DetectedCompression } from './layer-compression';
import { LayerError, layerErrorOf } from './layer-error';
import { resolveDir } from './safe-path';

/** OCI whiteout names. https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts */
export { WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from '@stratum/tar';
/** Overlay marks an opaque directory with this xattr (value `y`). https://docs.kernel.org/filesystems/overlayfs.html */
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

/** Options of {@link applyLayer}. */
export interface ApplyLayerOptions {
  /**
   * `oci` (default): whiteouts delete what lower layers put in the target.
   * `overlay`: whiteouts become overlayfs whiteouts (char device 0/0; opaque dirs get
   * `trusted.overlay.opaque=y`) so the target can serve as an overlay lowerdir.
   */
  whiteoutFormat?: 'oci' | 'overlay';
  /**
   * `create` (default): device nodes in the tar are created (image layers may have them).
   * `reject`: a device entry fails the apply with LAYER_UNSUPPORTED_ENTRY (build contexts).
   */
  devices?: 'create' | 'reject';
  /**
   * `layer` (default): an image layer; `.wh.*` names are OCI whiteouts (see `whiteoutFormat`).
   * `plain`: a plain archive (a build context): `.wh.foo` and `.wh..wh..opq` are ordinary
   * files, extracted as they are (as `docker build` does with its context).
   */
  kind?: 'layer' | 'plain';
  /**
   * When given, each regular file written gets its content's sha256 recorded here by its path
   * below the target (`dir/file`),
   * with the size and mtime it was written with (see {@link FileContentDigest}): what a later
   * hash of the same files (a COPY's cache key over a build context) would compute, known
   * without reading them again.
   */
  contentDigests?: Map<string, FileContentDigest>;
  /** Fail (LAYER_INVALID_TAR) once the uncompressed tar exceeds this many bytes. */
  maxBytes?: number;
  /**
   * Fail (LAYER_TOO_MANY_ENTRIES) at the entry after this many, before it is applied: what
   * the extraction remembers per entry (the archive rules' tree) stays bounded.
   */
  maxEntries?: number;
}

/** A file's content digest as {@link applyLayer} wrote it; trust it only while size and mtime still match. */
export interface FileContentDigest {
  /** sha256 of the content, hex. */
  readonly sha256: string;
  readonly size: number;
  /** Seconds since the epoch, as set from the tar entry. */
  readonly mtime: number;
}

/**
 * The recorded digest of the file `st` describes at `path` (below the target, as recorded), or
 * undefined when it changed since (or was never recorded).
 */
export function knownContentDigest(
  digests: ReadonlyMap<string, FileContentDigest>,
  path: string,
  st: { size: number; mtimeMs: number; isFile(): boolean },
): string | undefined {
  const rec = digests.get(path);
  return rec !== undefined &&
    st.isFile() &&
    st.size === rec.size &&
    Math.round(st.mtimeMs) === Math.round(rec.mtime * 1000)
    ? rec.sha256
    : undefined;
}

/** What {@link applyLayer} did. */
export interface ApplyLayerResult {
  /** Tar entries applied (whiteouts included, pax/long-name records not). */
  entries: number;
  /** Bytes of regular-file content written. */
  bytes: number;
  /** `sha256:` of the uncompressed tar stream: compare it with the expected diffID. */
  diffId: string;
  /** Bytes of the uncompressed tar stream. */
  uncompressedSize: number;
  compression: DetectedCompression;
  /** Things skipped on purpose (e.g. xattrs when `setfattr` is missing). At most 100. */
  warnings: string[];
}

const MAX_WARNINGS = 100;

/**
 * Regular files up to this size are buffered whole (bounded memory) and written with
 * synchronous calls on one fd; bigger ones are streamed with async writes.
 */
const SMALL_FILE = 1024 * 1024;
/** Longest run of synchronous fs work before the event loop gets a turn. */
const SYNC_SLICE_MS = 10;

/**
 * Why synchronous calls: entries are applied strictly one after another (each may depend on
 * the previous one), so the async fs API bought no concurrency, only a thread-pool round trip
 * per call (~6 per file: open, write, close, chown, chmod, utimes), which left the process
 * idle most of the time. Each call here is a local metadata operation or a write of at most
 * {@link SMALL_FILE} bytes; {@link Applier.maybeYield} hands the event loop a turn every
 * {@link SYNC_SLICE_MS} ms so timers (lease renewals, heartbeats) and sockets keep running.
 */
const O_CREATE_EXCL =
  fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

class Applier {
  readonly layerPaths = new Set<string>();
  readonly layerAncestors = new Set<string>();
  readonly dirTimes = new Map<string, number>();
  /** Real directories seen so far (cleared on every removal); saves lstat calls. */
  readonly knownDirs = new Set<string>();
  readonly warnings: string[] = [];
  entries = 0;
  bytes = 0;
  private xattrsUnavailable = false;
  private sliceStart = performance.now();

  constructor(
    readonly root: string,
    readonly overlay: boolean,
    readonly rejectDevices: boolean,
    readonly plain: boolean,
    /** Set when the target started empty: the archive rules the API checks uploads with. */
    readonly rules: ArchiveRules | undefined,
    readonly contentDigests: Map<string, FileContentDigest> | undefined,
  ) {}

  /** Records `abs`'s content digest (see ApplyLayerOptions.contentDigests), by its path below the root. */
  private recordContent(abs: string, entry: TarEntry, hash: Hash | undefined): void {
    if (hash !== undefined) {
      this.contentDigests?.set(this.below(abs), {
        sha256: hash.digest('hex'),
        size: entry.size,
        mtime: entry.mtime,
      });
    }
  }

  /** `abs` (a path this applier made from its root) relative to the root. */
  private below(abs: string): string {
    return abs.slice(this.root.length + 1);
  }

  warn(message: string): void {
    if (this.warnings.length < MAX_WARNINGS) {
      this.warnings.push(message);
    }
  }

  private remember(rel: string[]): void {
    this.layerPaths.add(rel.join('/'));
    for (let i = 1; i < rel.length; i++) {
      this.layerAncestors.add(rel.slice(0, i).join('/'));
    }
  }

  /** Gives the event loop a turn when synchronous work has run for a while. */
  async maybeYield(): Promise<void> {
    const now = performance.now();
    if (now - this.sliceStart >= SYNC_SLICE_MS) {
      await new Promise<void>((r) => setImmediate(r));
      this.sliceStart = performance.now();
    }
  }

  async apply(entry: TarEntry): Promise<void> {
    const comps = this.rules?.check(entry) ?? cleanEntryPath(entry.path);
    this.entries++;
    if (comps.length === 0) {
      if (entry.type === 'dir') {
        await this.metadata(this.root, entry);
      } else {
        this.warn(`ignored non-directory entry for the root: ${entry.path}`);
      }
      return;
    }
    const base = comps[comps.length - 1];
    const whiteout = this.plain ? undefined : whiteoutOf(base, entry.path);
    if (whiteout !== undefined) {
      await this.whiteout(entry, comps.slice(0, -1), whiteout);
      return;
    }
    let linkTarget: string | undefined;
    if (entry.type === 'link') {
      // Resolve before anything at the entry's path is removed.
      linkTarget = await this.linkTarget(entry);
    }
    const parent = (await resolveDir(
      this.root,
      comps.slice(0, -1),
      entry.path,
      true,
      this.knownDirs,
    )) as string[];
    const rel = [...parent, base];
    const abs = join(this.root, ...rel);
    if (linkTarget === abs) {
      this.remember(rel);
      return; // a hard link to itself: nothing to do
    }
    const existing = lstatSync(abs, { throwIfNoEntry: false });
    // Replace whatever is there, except a directory that stays a directory (merge).
    if (existing && !(existing.isDirectory() && entry.type === 'dir')) {
      await this.remove(abs);
    }
    const plainMeta = entry.xattrs.size === 0;
    switch (entry.type) {
      case 'dir':
        if (!existing?.isDirectory()) {
          mkdirSync(abs, { mode: 0o700 });
        }
        if (plainMeta) {
          this.remember(rel);
          lchownSync(abs, entry.uid, entry.gid);
          chmodSync(abs, entry.mode & 0o7777); // after chown, which clears setuid/setgid
          this.dirTimes.set(abs, entry.mtime); // after the directory's contents are written
          return;
        }
        break;
      case 'file':
        if (plainMeta && entry.size <= SMALL_FILE) {
          await this.writeSmallFile(abs, entry);
          this.remember(rel);
          return;
        }
        await this.writeFile(abs, entry);
        break;
      case 'symlink':
        symlinkSync(entry.linkpath, abs);
        if (plainMeta) {
          this.remember(rel);
          lchownSync(abs, entry.uid, entry.gid);
          lutimesSync(abs, entry.mtime, entry.mtime);
          return;
        }
        break;
      case 'link': {
        await link(linkTarget as string, abs);
        const same = this.contentDigests?.get(this.below(linkTarget as string));
        if (same !== undefined) {
          this.contentDigests?.set(this.below(abs), same); // one inode, one content
        }
        this.remember(rel);
        return; // the inode's metadata belongs to the entry that created it
      }
      case 'char':
      case 'block':
        if (this.rejectDevices) {
          throw new LayerError(
            'LAYER_UNSUPPORTED_ENTRY',
            `device nodes are not allowed here: ${entry.path}`,
            entry.path,
          );
        }
        await mknod(abs, entry.type, entry.mode, entry.devmajor, entry.devminor);
        break;
      case 'fifo':
        await mknod(abs, 'fifo', entry.mode);
        break;
      default: {
        const never: never = entry.type;
        throw new LayerError(
          'LAYER_UNSUPPORTED_ENTRY',
          `unsupported entry type ${String(never)}`,
          entry.path,
        );
      }
    }
    this.remember(rel);
    await this.metadata(abs, entry);
  }

  private async linkTarget(entry: TarEntry): Promise<string> {
    const comps = cleanEntryPath(entry.linkpath, entry.path);
    if (comps.length === 0) {
      throw new LayerError('LAYER_UNSUPPORTED_ENTRY', 'hard link to the root directory', entry.path);
    }
    const parent = await resolveDir(this.root, comps.slice(0, -1), entry.path, false, this.knownDirs);
    const missing = (): LayerError =>
      new LayerError(
        'LAYER_LINK_TARGET_MISSING',
        `hard link target ${JSON.stringify(entry.linkpath)} does not exist in the layer root`,
        entry.path,
      );
    if (parent === undefined) {
      throw missing();
    }
    const abs = join(this.root, ...parent, comps[comps.length - 1]);
    const st = await lstat(abs).catch(() => undefined);
    if (!st) {
      throw missing();
    }
    if (st.isDirectory()) {
      throw new LayerError('LAYER_UNSUPPORTED_ENTRY', 'hard link to a directory', entry.path);
    }
    return abs;
  }

  /**
   * A small regular file without xattrs: body buffered (at most SMALL_FILE bytes), then
   * created (O_EXCL|O_NOFOLLOW: never through a symlink), written, chowned, chmodded and
   * timestamped through one fd, synchronously (see SYNC_SLICE_MS).
   */
  private async writeSmallFile(abs: string, entry: TarEntry): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of entry.body()) {
      chunks.push(chunk);
    }
    await this.maybeYield();
    const hash = this.contentDigests !== undefined ? createHash('sha256') : undefined;
    const fd = openSync(abs, O_CREATE_EXCL, 0o600);
    try {
      for (const chunk of chunks) {
        let off = 0;
        while (off < chunk.length) {
          off += writeSync(fd, chunk, off, chunk.length - off);
        }
        hash?.update(chunk);
        this.bytes += chunk.length;
      }
      fchownSync(fd, entry.uid, entry.gid);
      fchmodSync(fd, entry.mode & 0o7777); // after chown, which clears setuid/setgid
      futimesSync(fd, entry.mtime, entry.mtime); // after the last write
    } finally {
      closeSync(fd);
    }
    this.recordContent(abs, entry, hash);
  }

  private async writeFile(abs: string, entry: TarEntry): Promise<void> {
    const hash = this.contentDigests !== undefined ? createHash('sha256') : undefined;
    const fh = await open(abs, 'wx', 0o600);
    try {
      for await (const chunk of entry.body()) {
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
        hash?.update(chunk);
        this.bytes += chunk.length;
      }
    } finally {
      await fh.close();
    }
    this.recordContent(abs, entry, hash); // its mtime is set by metadata() right after
  }

  private async metadata(abs: string, entry: TarEntry): Promise<void> {
    await lchown(abs, entry.uid, entry.gid);
    if (entry.type !== 'symlink') {
      // After chown, which clears setuid/setgid.
      await chmod(abs, entry.mode & 0o7777);
    }
    for (const [name, value] of entry.xattrs) {
      if (name.startsWith('trusted.overlay.')) {
        // A layer must not smuggle overlay metadata (redirects, opaque) into a lowerdir.
        this.warn(`ignored xattr ${name} on ${entry.path}`);
        continue;
      }
      await this.xattr(abs, name, value, entry.path);
    }
    if (entry.type === 'dir') {
      this.dirTimes.set(abs, entry.mtime); // after the directory's contents are written
    } else {
      await lutimes(abs, entry.mtime, entry.mtime);
    }
  }

  private async xattr(abs: string, name: string, value: Buffer, entryPath: string): Promise<void> {
    if (this.xattrsUnavailable) {
      this.warn(`skipped xattr ${name} on ${entryPath}: setfattr is not installed`);
      return;
    }
    try {
      await setXattr(abs, name, value);
    } catch (e) {
      if (e instanceof LayerError && e.code === 'LAYER_TOOL_MISSING') {
        this.xattrsUnavailable = true;
        this.warn(`skipped xattr ${name} on ${entryPath}: setfattr is not installed`);
        return;
      }
      throw e;
    }
  }

  private async whiteout(entry: TarEntry, parentComps: string[], whiteout: Whiteout): Promise<void> {
    const parent = await resolveDir(this.root, parentComps, entry.path, this.overlay, this.knownDirs);
    if (whiteout.kind === 'opaque') {
      if (parent === undefined) {
        return; // nothing below to hide
      }
      if (this.overlay) {
        await setXattr(join(this.root, ...parent), OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
      } else {
        await this.pruneLower(parent);
      }
      return;
    }
    if (whiteout.kind === 'meta') {
      this.warn(`ignored whiteout meta entry ${entry.path}`);
      return;
    }
    const name = whiteout.name;
    if (parent === undefined) {
      return;
    }
    const rel = [...parent, name];
    if (this.layerPaths.has(rel.join('/'))) {
      return; // whiteouts hide lower layers only, never entries of their own layer
    }
    const abs = join(this.root, ...rel);
    await this.remove(abs);
    if (this.overlay) {
      await mknod(abs, 'char', 0, 0, 0);
    }
  }

  /** Opaque directory: drop what lower layers put there, keep this layer's entries. */
  private async pruneLower(rel: string[]): Promise<void> {
    const abs = join(this.root, ...rel);
    for (const name of await readdir(abs)) {
      const childRel = [...rel, name];
      const key = childRel.join('/');
      const childAbs = join(abs, name);
      if (this.layerPaths.has(key) || this.layerAncestors.has(key)) {
        const st = await lstat(childAbs);
        if (st.isDirectory()) {
          await this.pruneLower(childRel);
        }
      } else {
        await this.remove(childAbs);
      }
    }
  }

  private async remove(abs: string): Promise<void> {
    this.knownDirs.clear();
    await rm(abs, { recursive: true, force: true });
  }

  async finish(): Promise<void> {
    for (const [abs, mtime] of this.dirTimes) {
      await utimes(abs, mtime, mtime).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') {
          throw e;
        }
      });
    }
  }
}

/**
 * Applies a layer tar (plain, gzip or zstd, detected from the first bytes) to `targetDir`.
 *
 * Whiteouts, hard links, symlinks, devices, fifos, modes (setuid/sticky), owners, xattrs
 * (`SCHILY.xattr.*`, via `setfattr`) and mtimes are honoured; directory mtimes are set
 * after their contents. Every path is resolved component by component with lstat inside
 * the root: a `..` that climbs out, a symlink (anywhere on the path, including one created
 * earlier in the same tar) that leads out, or a hard link whose target is outside fails
 * with `LayerError` code `LAYER_PATH_ESCAPE` naming the entry, before anything is written
 * outside. Absolute names and absolute symlink targets are taken relative to the root, as
 * Docker does. File contents are streamed, never held whole in memory.
 *
 * When the target starts empty (every layer of the cache, every build context), each entry is
 * first checked by @stratum/tar's `ArchiveRules`, the very check the API runs on an uploaded
 * context or root filesystem, so both refuse the same entries with the same reason; the
 * on-disk resolution stays the guard (and the only one for a non-empty target).
 *
 * On failure the target is left partially written: extract into a scratch directory.
 */
export async function applyLayer(
  source: Readable,
  targetDir: string,
  options: ApplyLayerOptions = {},
): Promise<ApplyLayerResult> {
  const root = await realpath(targetDir);
  const rejectDevices = options.devices === 'reject';
  const kind = options.kind ?? 'layer';
  const rules =
    (await readdir(root)).length === 0
      ? new ArchiveRules({ kind, devices: rejectDevices ? 'reject' : 'allow' })
      : undefined;
  const input = await decompressed(source);
  const applier = new Applier(
    root,
    options.whiteoutFormat === 'overlay',
    rejectDevices,
    kind === 'plain',
    rules,
    options.contentDigests,
  );
  const hash = createHash('sha256');
  const reader = new ByteReader(input.stream, { maxBytes: options.maxBytes, hash });
  const maxEntries = options.maxEntries ?? Infinity;
  let count = 0;
  try {
    for await (const entry of readTar(reader)) {
      if (++count > maxEntries) {
        throw new LayerError(
          'LAYER_TOO_MANY_ENTRIES',
          `the archive holds more than ${maxEntries} entries`,
          entry.path,
        );
      }
      await applier.apply(entry);
      await applier.maybeYield();
    }
    await input.exited;
  } catch (e) {
    input.close();
    if (e instanceof TarError) {
      throw layerErrorOf(e);
    }
    // A corrupt or truncated gzip stream fails inside zlib (Z_DATA_ERROR, Z_BUF_ERROR…): that is
    // a bad layer, the user's input, not a fault of this host.
    const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new LayerError(
        'LAYER_INVALID_TAR',
        `layer is not valid ${input.compression} data: ${(e as Error).message}`,
      );
    }
    throw e;
  }
  await applier.finish();
  return {
    entries: applier.entries,
    bytes: applier.bytes,
    diffId: `sha256:${hash.digest('hex')}`,
    uncompressedSize: reader.total,
    compression: input.compression,
    warnings: applier.warnings,
  };
}
