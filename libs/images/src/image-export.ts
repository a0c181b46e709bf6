// What `docker buildx build --output` hands back besides an image in a registry: the final
// filesystem as a tar (type=tar, and type=local, which the client unpacks) and the image as an
// OCI image layout in a tar (type=oci).
// https://docs.docker.com/build/exporters/local-tar/ · https://docs.docker.com/build/exporters/oci-docker/
// https://github.com/opencontainers/image-spec/blob/main/image-layout.md
import { posix } from 'node:path';
import { StratumError } from '@stratum/contracts';
import { decompressed } from '@stratum/layers';
import { BlobDigest, BlobStore } from '@stratum/storage';
import {
  ByteReader,
  encodeHeader,
  END_OF_ARCHIVE,
  OutputBuffer,
  padding,
  readTar,
  TarEntry,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
} from '@stratum/tar';
import { LayerDescriptor, StoredImage } from './image-types';

/** Output is handed on in chunks of about this size. */
const OUT_CHUNK = 1024 * 1024;

/** `./a/b/` -> `a/b`; null for the root itself or a path leading out. */
function normalise(path: string): string | null {
  const p = posix.normalize(`/${path}`).replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '' || p === '.' || p.split('/').includes('..')) {
    return null;
  }
  return p;
}

function ancestors(path: string): string[] {
  const parts = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) {
    out.push(parts.slice(0, i).join('/'));
  }
  return out;
}

/**
 * The image's filesystem as one tar: its layers merged top-down as overlayfs shows them. A path
 * is taken from the topmost layer that has it; `.wh.name` deletes `name` of the layers below,
 * `.wh..wh..opq` hides everything below of its directory, and a non-directory hides whatever a
 * lower layer had under its path. Whiteouts themselves never reach the output. Owners, modes,
 * mtimes, xattrs and device numbers are kept. A hard link whose target is not in its own layer
 * is left out (what it linked to is not what the merged tree shows).
 */
export async function* exportFilesystem(
  blobs: BlobStore,
  layers: readonly LayerDescriptor[],
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  /** Paths emitted, and those of them that are not directories. */
  const seen = new Set<string>();
  const nonDirs = new Set<string>();
  /** Deleted or opaque by an upper layer: nothing below may show them (or their children). */
  const deleted = new Set<string>();
  const opaque = new Set<string>();
  const buf = new OutputBuffer();
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i];
    const raw = await blobs.get(layer.digest as BlobDigest);
    const plain = await decompressed(raw);
    const layerDeleted: string[] = [];
    const layerOpaque: string[] = [];
    const layerPaths = new Set<string>();
    const orphanLinks: { path: string; target: string; entry: TarEntry }[] = [];
    try {
      for await (const entry of readTar(new ByteReader(plain.stream))) {
        if (signal?.aborted === true) {
          throw new StratumError('BAD_REQUEST', 'export cancelled');
        }
        const path = normalise(entry.path);
        if (path === null) {
          continue;
        }
        const base = posix.basename(path);
        const dir = posix.dirname(path) === '.' ? '' : posix.dirname(path);
        if (base === WHITEOUT_OPAQUE) {
          if (dir !== '') {
            layerOpaque.push(dir);
          }
          continue;
        }
        if (base.startsWith(WHITEOUT_PREFIX)) {
          layerDeleted.push(
            dir === '' ? base.slice(WHITEOUT_PREFIX.length) : `${dir}/${base.slice(WHITEOUT_PREFIX.length)}`,
          );
          continue;
        }
        const hidden =
          seen.has(path) ||
          deleted.has(path) ||
          ancestors(path).some((a) => deleted.has(a) || opaque.has(a) || nonDirs.has(a));
        if (hidden) {
          continue;
        }
        if (entry.type === 'link') {
          const target = normalise(entry.linkpath);
          if (target === null) {
            continue;
          }
          if (!layerPaths.has(target)) {
            // Its target is hidden by an upper layer, yet overlayfs still shows this name with
            // the old content: written as a file from a second read of this layer, below.
            orphanLinks.push({ path, target, entry });
            seen.add(path);
            nonDirs.add(path);
            continue;
          }
        }
        seen.add(path);
        layerPaths.add(path);
        if (entry.type !== 'dir') {
          nonDirs.add(path);
        }
        buf.push(
          encodeHeader({
            path: entry.type === 'dir' ? `${path}/` : path,
            type: entry.type,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            size: entry.type === 'file' ? entry.size : 0,
            mtime: entry.mtime,
            linkpath: entry.type === 'link' ? (normalise(entry.linkpath) ?? '') : entry.linkpath,
            devmajor: entry.devmajor,
            devminor: entry.devminor,
            xattrs: entry.xattrs,
          }),
        );
        if (entry.type === 'file') {
          for await (const chunk of entry.body()) {
            buf.push(chunk);
            if (buf.size >= OUT_CHUNK) {
              yield buf.take();
            }
          }
          buf.push(Buffer.alloc(padding(entry.size)));
        }
        if (buf.size >= OUT_CHUNK) {
          yield buf.take();
        }
      }
      await plain.exited;
    } finally {
      plain.close();
    }
    if (orphanLinks.length > 0) {
      yield* orphanLinkFiles(blobs, layer, orphanLinks, buf);
    }
    // A layer's whiteouts apply to the layers below it, never to its own entries.
    for (const d of layerDeleted) {
      deleted.add(d);
    }
    for (const o of layerOpaque) {
      opaque.add(o);
    }
  }
  buf.push(END_OF_ARCHIVE);
  yield buf.take();
}

/**
 * Hard links of a layer whose target an upper layer hid: each becomes a regular file with the
 * target's content (read again from the layer), as the merged tree shows it; further links to
 * the same target link to that first file.
 */
async function* orphanLinkFiles(
  blobs: BlobStore,
  layer: LayerDescriptor,
  links: readonly { path: string; target: string; entry: TarEntry }[],
  buf: OutputBuffer,
): AsyncGenerator<Buffer> {
  const byTarget = new Map<string, { path: string; entry: TarEntry }[]>();
  for (const l of links) {
    byTarget.set(l.target, [...(byTarget.get(l.target) ?? []), l]);
  }
  const plain = await decompressed(await blobs.get(layer.digest as BlobDigest));
  try {
    for await (const entry of readTar(new ByteReader(plain.stream))) {
      const path = normalise(entry.path);
      const group = path === null ? undefined : byTarget.get(path);
      if (group === undefined || entry.type !== 'file') {
        continue;
      }
      byTarget.delete(path as string);
      const [first, ...rest] = group;
      buf.push(
        encodeHeader({
          path: first.path,
          type: 'file',
          mode: entry.mode,
          uid: entry.uid,
          gid: entry.gid,
          size: entry.size,
          mtime: entry.mtime,
          linkpath: '',
          xattrs: entry.xattrs,
        }),
      );
      for await (const chunk of entry.body()) {
        buf.push(chunk);
        yield buf.take();
      }
      buf.push(Buffer.alloc(padding(entry.size)));
      for (const other of rest) {
        buf.push(
          encodeHeader({
            path: other.path,
            type: 'link',
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            size: 0,
            mtime: entry.mtime,
            linkpath: first.path,
          }),
        );
      }
      yield buf.take();
    }
    await plain.exited;
  } finally {
    plain.close();
  }
}

/** One blob of the layout, streamed from the store and checked against its descriptor's size. */
async function* blobEntry(blobs: BlobStore, digest: string, size: number): AsyncGenerator<Buffer> {
  const hex = digest.replace(/^sha256:/, '');
  yield encodeHeader({
    path: `blobs/sha256/${hex}`,
    type: 'file',
    mode: 0o644,
    size,
    mtime: 0,
    linkpath: '',
  });
  let got = 0;
  for await (const chunk of (await blobs.get(digest as BlobDigest)) as AsyncIterable<Buffer>) {
    got += chunk.length;
    if (got > size) {
      break;
    }
    yield chunk;
  }
  if (got !== size) {
    throw new StratumError('BLOB_CORRUPT', `blob ${digest} holds ${got} bytes, its descriptor says ${size}`);
  }
  yield Buffer.alloc(padding(size));
}

function jsonEntry(path: string, value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value));
  return Buffer.concat([
    encodeHeader({ path, type: 'file', mode: 0o644, size: body.length, mtime: 0, linkpath: '' }),
    body,
    Buffer.alloc(padding(body.length)),
  ]);
}

/**
 * The image as an OCI image layout in a tar (`oci-layout`, `index.json`, `blobs/sha256/…`), as
 * buildx's `type=oci` exporter writes it: `index.json` names the manifest, with the tag as
 * `org.opencontainers.image.ref.name` (and the full name as `io.containerd.image.name`) when given.
 */
export async function* exportOciLayout(
  blobs: BlobStore,
  image: StoredImage,
  name: { readonly full: string; readonly tag: string } | null,
): AsyncGenerator<Buffer> {
  yield jsonEntry('oci-layout', { imageLayoutVersion: '1.0.0' });
  yield jsonEntry('index.json', {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: image.manifestMediaType,
        digest: image.manifestDigest,
        size: image.manifestSize,
        ...(name !== null
          ? {
              annotations: {
                'io.containerd.image.name': name.full,
                'org.opencontainers.image.ref.name': name.tag,
              },
            }
          : {}),
      },
    ],
  });
  for (const dir of ['blobs/', 'blobs/sha256/']) {
    yield encodeHeader({ path: dir, type: 'dir', mode: 0o755, size: 0, mtime: 0, linkpath: '' });
  }
  const written = new Set<string>();
  const all = [
    { digest: image.manifestDigest, size: image.manifestSize },
    { digest: image.configDigest, size: image.manifest.config.size },
    ...image.layers.map((l) => ({ digest: l.digest, size: l.size })),
  ];
  for (const b of all) {
    if (written.has(b.digest)) {
      continue;
    }
    written.add(b.digest);
    yield* blobEntry(blobs, b.digest, b.size);
  }
  yield END_OF_ARCHIVE;
}
