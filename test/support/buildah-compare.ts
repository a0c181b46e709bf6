// Stratum's image beside Debian's buildah's image of the same Dockerfile: both as OCI layouts,
// unpacked with `umoci raw unpack`, and compared path by path (type, mode, owner, link target,
// file contents), whiteout by whiteout (every layer's `.wh.` entries) and config by config.
// Used by the bench-workload comparison (buildah.e2e) and the RUN --mount one (buildah-mounts.e2e).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { copyFile, link, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** What `umoci raw unpack` made of a layout: the root filesystem, the config, the layer blobs. */
export interface UnpackedImage {
  readonly rootfs: string;
  readonly config: Record<string, unknown>;
  /** The layer blobs' paths inside the layout, bottom first. */
  readonly layers: string[];
}

/**
 * An OCI image layout at `out` holding manifest `digest` from a Stratum filesystem blob store
 * (`$DATA_DIR/store`), tagged `x`. Blobs are hard-linked (copied across filesystems).
 */
export async function layoutFromStore(storeDir: string, digest: string, out: string): Promise<void> {
  const blob = (d: string): string => join(storeDir, 'blobs/sha256', d.slice(7, 9), d.slice(7));
  await mkdir(join(out, 'blobs/sha256'), { recursive: true });
  const put = async (d: string): Promise<void> => {
    const target = join(out, 'blobs/sha256', d.slice(7));
    if (!existsSync(target)) {
      await link(blob(d), target).catch(() => copyFile(blob(d), target));
    }
  };
  const manifestBytes = await readFile(blob(digest));
  const manifest = JSON.parse(manifestBytes.toString()) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  await put(digest);
  await put(manifest.config.digest);
  for (const l of manifest.layers) {
    await put(l.digest);
  }
  await writeFile(join(out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(out, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest,
          size: manifestBytes.length,
          annotations: { 'org.opencontainers.image.ref.name': 'x' },
        },
      ],
    }),
  );
}

/** Unpacks tag `x` of `layout` into `${layout}-rootfs`. */
export async function umociUnpack(layout: string): Promise<UnpackedImage> {
  const rootfs = `${layout}-rootfs`;
  execFileSync('umoci', ['raw', 'unpack', '--image', `${layout}:x`, rootfs], { stdio: 'pipe' });
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const blobPath = (d: string): string => join(layout, 'blobs/sha256', d.slice(7));
  const manifest = JSON.parse(await readFile(blobPath(index.manifests[0].digest), 'utf8')) as {
    config: { digest: string };
    layers: { digest: string }[];
  };
  const config = JSON.parse(await readFile(blobPath(manifest.config.digest), 'utf8')) as {
    config?: Record<string, unknown>;
  };
  return { rootfs, config: config.config ?? {}, layers: manifest.layers.map((l) => blobPath(l.digest)) };
}

/**
 * Every whiteout of the image (`/dir/.wh.name`, `/dir/.wh..wh..opq`), bottom layer first, each
 * layer's sorted. One list, not one per layer: where a step's change lands (WORKDIR's directory
 * in its own layer or in the next RUN's) differs between builders. GNU tar reads gzip and zstd.
 */
export function whiteouts(image: UnpackedImage): string[] {
  const out: string[] = [];
  for (const layer of image.layers) {
    const names = execFileSync('tar', ['-tf', layer], { maxBuffer: 1 << 28 })
      .toString()
      .split('\n');
    out.push(
      ...names
        .filter((n) => /(^|\/)\.wh\./.test(n))
        .map((n) => `/${n.replace(/^\.?\//, '')}`)
        .sort(),
    );
  }
  return out;
}

/** One path of a root filesystem as the comparison sees it (mtimes are left out). */
export interface TreeEntry {
  type: string;
  mode: string;
  owner: string;
  link?: string;
  sha?: string;
}

/**
 * Every path of a root filesystem with what the comparison looks at. find and sha256sum do the
 * walking: tens of thousands of files in well under a second.
 */
export function tree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const listing = execFileSync('find', [root, '-mindepth', '1', '-printf', '%P\\0%y\\0%m\\0%U:%G\\0%l\\0'], {
    maxBuffer: 1 << 30,
  })
    .toString()
    .split('\0');
  const TYPES: Record<string, string> = { d: 'dir', f: 'file', l: 'symlink' };
  for (let i = 0; i + 5 <= listing.length; i += 5) {
    const [path, type, mode, owner, target] = listing.slice(i, i + 5);
    const e: TreeEntry = { type: TYPES[type] ?? `other(${type})`, mode, owner };
    if (type === 'l') {
      e.link = target;
    }
    out.set(`/${path}`, e);
  }
  const sums = execFileSync(
    'sh',
    ['-c', 'cd "$1" && find . -type f -print0 | xargs -0 -r sha256sum --zero', 'sh', root],
    { maxBuffer: 1 << 30 },
  )
    .toString()
    .split('\0')
    .filter((l) => l !== '');
  for (const line of sums) {
    const sha = line.slice(0, 64);
    const path = line.slice(66).replace(/^\.\//, '/');
    const e = out.get(path);
    if (e !== undefined) {
      e.sha = sha;
    }
  }
  return out;
}

/**
 * Paths buildah adds that are no part of the Dockerfile's result: with --isolation oci it
 * bind-mounts /etc/hosts, /etc/resolv.conf and /run/.containerenv and may leave their empty
 * mount points (and /run itself) behind.
 */
export const BUILDAH_ARTIFACTS: ReadonlySet<string> = new Set([
  '/etc/hosts',
  '/etc/resolv.conf',
  '/etc/hostname',
  '/run',
  '/run/.containerenv',
]);

export interface DifferenceOptions {
  /** Paths both must have whose entries may differ (a runtime difference the caller explains). */
  readonly known?: readonly string[];
  /** More paths only buildah may have, besides {@link BUILDAH_ARTIFACTS} (the caller says why). */
  readonly buildahOnly?: readonly string[];
}

/** The differences between two {@link tree}s, one line each; `[]` when they agree. */
export function differences(
  ours: Map<string, TreeEntry>,
  theirs: Map<string, TreeEntry>,
  options: DifferenceOptions = {},
): string[] {
  const known = options.known ?? [];
  const buildahOnly = new Set(options.buildahOnly ?? []);
  const diffs: string[] = [];
  for (const [p, t] of theirs) {
    const o = ours.get(p);
    if (known.includes(p)) {
      if (o === undefined) {
        diffs.push(`only in buildah: ${p} (a known difference in content, but the path must be in both)`);
      }
      continue;
    }
    if (o === undefined) {
      if (!BUILDAH_ARTIFACTS.has(p) && !buildahOnly.has(p)) {
        diffs.push(`only in buildah: ${p} ${JSON.stringify(t)}`);
      }
      continue;
    }
    if (JSON.stringify(o) !== JSON.stringify(t)) {
      diffs.push(`${p}: ours ${JSON.stringify(o)} buildah ${JSON.stringify(t)}`);
    }
  }
  for (const [p, o] of ours) {
    if (!theirs.has(p)) {
      diffs.push(`only in ours: ${p} ${JSON.stringify(o)}`);
    }
  }
  return diffs;
}

const CONFIG_FIELDS = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels'];

/** The config fields both builders set from a Dockerfile, empty ones and buildah's own label left out. */
export function comparableConfig(c: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of CONFIG_FIELDS) {
    let v = c[f];
    if (f === 'Labels' && v !== undefined && v !== null) {
      // buildah stamps its own version
      v = Object.fromEntries(
        Object.entries(v as Record<string, string>).filter(([k]) => k !== 'io.buildah.version'),
      );
    }
    const empty =
      v === undefined ||
      v === null ||
      v === '' ||
      (Array.isArray(v) && v.length === 0) ||
      (typeof v === 'object' && Object.keys(v).length === 0);
    if (!empty) {
      out[f] = v;
    }
  }
  return out;
}

/** Debian's buildah with a storage of its own below `dir` (overlay, runc, `--isolation oci`). */
export class BuildahStore {
  constructor(private readonly dir: string) {}

  private tmp(): string {
    const t = join(this.dir, 'tmp');
    mkdirSync(t, { recursive: true });
    return t;
  }

  private get globals(): string[] {
    return [
      '--root',
      join(this.dir, 'root'),
      '--runroot',
      join(this.dir, 'runroot'),
      '--storage-driver',
      'overlay',
    ];
  }

  /**
   * `buildah build --layers` of `context` tagged `name` (more flags in `args`: `--secret`, `-f`),
   * then pushed to an OCI layout (tag `x`) below the store's directory.
   */
  build(context: string, name: string, args: string[] = []): { layout: string; seconds: number } {
    const started = Date.now();
    try {
      execFileSync(
        'buildah',
        [
          ...this.globals,
          'build',
          '--layers',
          '--runtime',
          '/usr/sbin/runc',
          '--isolation',
          'oci',
          '--network',
          'host',
          ...args,
          '-t',
          name,
          context,
        ],
        // Cache mounts live below TMPDIR (buildah-cache-<uid>): below the store, so they go with it.
        { stdio: 'pipe', maxBuffer: 1 << 28, env: { ...process.env, TMPDIR: this.tmp() } },
      );
    } catch (err) {
      const e = err as { stderr?: Buffer; stdout?: Buffer };
      throw new Error(`buildah build of ${name} failed:\n${e.stdout?.toString()}\n${e.stderr?.toString()}`, {
        cause: err,
      });
    }
    const seconds = (Date.now() - started) / 1000;
    const layout = join(this.dir, 'oci', name);
    mkdirSync(join(this.dir, 'oci'), { recursive: true });
    execFileSync('buildah', [...this.globals, 'push', name, `oci:${layout}:x`], { stdio: 'pipe' });
    return { layout, seconds };
  }

  /** Removes every container and image, and releases the mount buildah keeps of its own storage. */
  clean(): void {
    for (const args of [
      ['rm', '--all'],
      ['rmi', '--all', '--force'],
    ]) {
      try {
        execFileSync('buildah', [...this.globals, ...args], { stdio: 'ignore' });
      } catch {
        // nothing to remove
      }
    }
    try {
      execFileSync('umount', [join(this.dir, 'root/overlay')], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
}
