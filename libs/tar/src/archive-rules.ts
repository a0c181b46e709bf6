// What an archive may do when it is extracted into an empty directory: the one rule set the API
// applies to an uploaded build context (or root filesystem) while it streams in, and the
// extractor (`applyLayer` in @stratum/layers) applies to the same bytes on the worker.
import { TarError } from './tar-error';
import type { TarHeader } from './tar-format';

/** OCI whiteout names. https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts */
export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/**
 * Lexically cleans a tar entry name into root-relative components. A leading `/` is
 * relative to the root (as Docker and GNU tar do); `.` and empty components vanish; `..` pops
 * a component, and a `..` that would climb above the root is TAR_PATH_ESCAPE.
 */
export function cleanEntryPath(name: string, entry: string = name): string[] {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') {
      continue;
    }
    if (part === '..') {
      if (out.length === 0) {
        throw new TarError('TAR_PATH_ESCAPE', 'path climbs out of the root with ".."', entry);
      }
      out.pop();
      continue;
    }
    if (part.includes('\0')) {
      throw new TarError('TAR_INVALID', 'NUL byte in path', entry);
    }
    out.push(part);
  }
  return out;
}

/** What a layer entry's base name means (see {@link whiteoutOf}). */
export type Whiteout =
  | { readonly kind: 'opaque' }
  /** `.wh..wh.*` other than the opaque marker: aufs metadata, ignored. */
  | { readonly kind: 'meta' }
  | { readonly kind: 'name'; readonly name: string };

/**
 * The whiteout a layer entry's base name stands for, or undefined for an ordinary name.
 * `.wh.`, `.wh..` and `.wh...` whiteout nothing sensible: TAR_PATH_ESCAPE.
 */
export function whiteoutOf(base: string, entry: string): Whiteout | undefined {
  if (!base.startsWith(WHITEOUT_PREFIX)) {
    return undefined;
  }
  if (base === WHITEOUT_OPAQUE) {
    return { kind: 'opaque' };
  }
  if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
    return { kind: 'meta' };
  }
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..') {
    throw new TarError('TAR_PATH_ESCAPE', 'whiteout for an invalid name', entry);
  }
  return { kind: 'name', name };
}

/** Options of {@link ArchiveRules}. */
export interface ArchiveRulesOptions {
  /**
   * `layer` (default): an image layer; `.wh.*` names are OCI whiteouts.
   * `plain`: a plain archive (a build context); `.wh.*` names are ordinary files.
   */
  kind?: 'layer' | 'plain';
  /** `allow` (default), or `reject`: a char or block device entry is TAR_UNSUPPORTED_ENTRY. */
  devices?: 'allow' | 'reject';
}

/** A device entry refused by `devices: 'reject'`. */
export function isDeviceEntry(h: Pick<TarHeader, 'type'>): boolean {
  return h.type === 'char' || h.type === 'block';
}

type Node =
  { type: 'dir'; children: Map<string, Node> } | { type: 'symlink'; target: string } | { type: 'other' };

/** Longest chain of symlinks followed while resolving one path: the kernel's ELOOP limit. */
const MAX_SYMLINKS = 40;

/**
 * Checks the entries of one archive, in order, as if they were extracted into an empty
 * directory, without touching any filesystem: it keeps a tree of names (directories, symlinks
 * and their targets, other entries) and resolves every path in it the way the extractor does
 * on disk, with container semantics (an absolute name or symlink target is relative to the
 * root). {@link check} throws a {@link TarError} naming the entry for:
 *
 * - a name, or a hard link target, whose `..` climbs above the root (TAR_PATH_ESCAPE);
 * - a path through a symlink (of an earlier entry) that leads above the root (TAR_PATH_ESCAPE);
 * - a path through an earlier non-directory entry (TAR_NOT_A_DIRECTORY);
 * - a hard link to nothing earlier (TAR_LINK_TARGET_MISSING), to a directory or to the root
 *   (TAR_UNSUPPORTED_ENTRY);
 * - a device node when `devices` is `reject` (TAR_UNSUPPORTED_ENTRY);
 * - a whiteout of `.`, `..` or nothing, in a layer (TAR_PATH_ESCAPE).
 *
 * In a layer, whiteouts never remove entries of their own layer, so they leave the tree as it
 * is. Memory grows with the number of names (bounded by the archive's size limit).
 */
export class ArchiveRules {
  private readonly root: Node & { type: 'dir' } = { type: 'dir', children: new Map() };
  private readonly plain: boolean;
  private readonly rejectDevices: boolean;

  constructor(options: ArchiveRulesOptions = {}) {
    this.plain = options.kind === 'plain';
    this.rejectDevices = options.devices === 'reject';
  }

  /**
   * Checks one entry and records it. Returns its cleaned root-relative components (empty for
   * the root itself).
   */
  check(h: Pick<TarHeader, 'path' | 'type' | 'linkpath'>): string[] {
    const comps = cleanEntryPath(h.path);
    if (comps.length === 0) {
      return comps; // the root: a directory's metadata, anything else is ignored
    }
    const base = comps[comps.length - 1];
    if (!this.plain && whiteoutOf(base, h.path) !== undefined) {
      this.resolveDir(comps.slice(0, -1), h.path, false);
      return comps;
    }
    if (isDeviceEntry(h) && this.rejectDevices) {
      throw new TarError('TAR_UNSUPPORTED_ENTRY', `device nodes are not allowed here: ${h.path}`, h.path);
    }
    if (h.type === 'link') {
      this.linkTarget(h.path, h.linkpath);
    }
    const parent = this.resolveDir(comps.slice(0, -1), h.path, true) as Node & { type: 'dir' };
    const existing = parent.children.get(base);
    if (h.type === 'dir') {
      if (existing?.type !== 'dir') {
        parent.children.set(base, { type: 'dir', children: new Map() });
      }
    } else if (h.type === 'symlink') {
      parent.children.set(base, { type: 'symlink', target: h.linkpath });
    } else {
      parent.children.set(base, { type: 'other' });
    }
    return comps;
  }

  private linkTarget(entry: string, linkpath: string): void {
    const comps = cleanEntryPath(linkpath, entry);
    if (comps.length === 0) {
      throw new TarError('TAR_UNSUPPORTED_ENTRY', 'hard link to the root directory', entry);
    }
    const parent = this.resolveDir(comps.slice(0, -1), entry, false);
    const target = parent?.children.get(comps[comps.length - 1]);
    if (target === undefined) {
      throw new TarError(
        'TAR_LINK_TARGET_MISSING',
        `hard link target ${JSON.stringify(linkpath)} does not exist in the root`,
        entry,
      );
    }
    if (target.type === 'dir') {
      throw new TarError('TAR_UNSUPPORTED_ENTRY', 'hard link to a directory', entry);
    }
  }

  /**
   * Resolves directory components like `resolveDir` of @stratum/layers does on disk: symlinks
   * followed (absolute targets from the root), a `..` above the root is TAR_PATH_ESCAPE,
   * missing directories created when `create` is set, else undefined.
   */
  private resolveDir(
    components: readonly string[],
    entry: string,
    create: boolean,
  ): (Node & { type: 'dir' }) | undefined {
    const stack: (Node & { type: 'dir' })[] = [this.root];
    const names: string[] = [];
    const queue = [...components];
    let followed = 0;
    while (queue.length > 0) {
      const part = queue.shift() as string;
      if (part === '' || part === '.') {
        continue;
      }
      const here = stack[stack.length - 1];
      if (part === '..') {
        if (stack.length === 1) {
          throw new TarError('TAR_PATH_ESCAPE', 'a symlink on the path points outside the root', entry);
        }
        stack.pop();
        names.pop();
        continue;
      }
      const node = here.children.get(part);
      if (node === undefined) {
        if (!create) {
          return undefined;
        }
        const dir: Node & { type: 'dir' } = { type: 'dir', children: new Map() };
        here.children.set(part, dir);
        stack.push(dir);
        names.push(part);
        continue;
      }
      if (node.type === 'symlink') {
        if (++followed > MAX_SYMLINKS) {
          throw new TarError('TAR_PATH_ESCAPE', 'too many levels of symbolic links', entry);
        }
        if (node.target.startsWith('/')) {
          stack.length = 1;
          names.length = 0;
        }
        queue.unshift(...node.target.split('/'));
        continue;
      }
      if (node.type !== 'dir') {
        throw new TarError('TAR_NOT_A_DIRECTORY', `${[...names, part].join('/')} is not a directory`, entry);
      }
      stack.push(node);
      names.push(part);
    }
    return stack[stack.length - 1];
  }
}
