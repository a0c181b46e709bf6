import { ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import bcrypt from 'bcryptjs';
import { create as createTar } from 'tar';
import { freePort } from '@stratum/testing';

// Helpers shared by the registry, push and docker e2e tests: OCI layouts made here, a real CNCF
// Distribution registry (Debian's docker-registry), skopeo, and a private dockerd.

export const run = promisify(execFile);
export const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', ['--insecure-policy', ...args], { timeout: 120_000 });
  return stdout;
}

export interface OciImageParts {
  readonly manifest: Buffer;
  readonly config: Buffer;
  readonly layer: Buffer;
  readonly digest: string;
}

/** One image (a layer with `files`) as blobs: manifest, config, layer. */
export async function makeImage(
  work: string,
  files: Record<string, string>,
  platform: { architecture: string; os: string } = { architecture: 'amd64', os: 'linux' },
): Promise<OciImageParts> {
  const root = await mkdtemp(join(work, 'rootfs-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(root, name, '..'), { recursive: true });
    await writeFile(join(root, name), content);
  }
  const layerPath = `${root}.tar.gz`;
  await createTar(
    { gzip: true, file: layerPath, cwd: root, portable: true, mtime: new Date(0) },
    Object.keys(files),
  );
  const layer = await readFile(layerPath);
  const config = Buffer.from(
    JSON.stringify({
      ...platform,
      config: { Cmd: ['/hello'] },
      rootfs: { type: 'layers', diff_ids: [sha(gunzipSync(layer))] },
      history: [{ created_by: 'stratum e2e' }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha(config),
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length },
      ],
    }),
  );
  return { manifest, config, layer, digest: sha(manifest) };
}

/** Writes an OCI image layout at `dir` holding `images`, the top one tagged `tag` (an index when `index` is set). */
export async function writeOciLayout(
  dir: string,
  tag: string,
  images: OciImageParts[],
  index?: Buffer,
): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const img of images) {
    for (const blob of [img.layer, img.config, img.manifest]) {
      await writeFile(join(dir, 'blobs', 'sha256', sha(blob).slice(7)), blob);
    }
  }
  const top = index ?? images[0].manifest;
  if (index !== undefined) {
    await writeFile(join(dir, 'blobs', 'sha256', sha(index).slice(7)), index);
  }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: index !== undefined ? OCI_INDEX : OCI_MANIFEST,
          digest: sha(top),
          size: top.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
}

/** An OCI index of `images` with their platforms. */
export function makeIndex(images: { image: OciImageParts; architecture: string }[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: images.map(({ image, architecture }) => ({
        mediaType: OCI_MANIFEST,
        digest: image.digest,
        size: image.manifest.length,
        platform: { os: 'linux', architecture },
      })),
    }),
  );
}

export interface DistributionHandle {
  readonly host: string;
  readonly dir: string;
  stop(): Promise<void>;
}

/** A CNCF Distribution registry (`docker-registry serve`) on a free port, with htpasswd users when given. */
export async function startDistribution(users?: Record<string, string>): Promise<DistributionHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-distribution-'));
  const port = await freePort();
  let auth = '';
  if (users !== undefined) {
    const lines = Object.entries(users).map(([u, p]) => `${u}:${bcrypt.hashSync(p, 6)}`);
    await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    auth = `auth:\n  htpasswd:\n    realm: distribution\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  await writeFile(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`,
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: 'ignore',
  });
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`http://${host}/v2/`);
      if (res.status === 200 || res.status === 401) {
        break;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error('docker-registry did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    dir,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `podman` or `buildah` with a private store under `store` (vfs: no mounts), so the host's
 * images are never touched; `extra` are global flags (e.g. podman's `--runtime`).
 */
export function isolatedTool(
  tool: 'podman' | 'buildah',
  store: string,
  extra: string[] = [],
  timeoutMs = 180_000,
): (...args: string[]) => Promise<string> {
  return async (...args: string[]) =>
    (
      await run(
        tool,
        [
          '--root',
          join(store, 'root'),
          '--runroot',
          join(store, 'run'),
          '--storage-driver',
          'vfs',
          ...extra,
          ...args,
        ],
        { timeout: timeoutMs },
      )
    ).stdout;
}
