import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTree } from '@stratum/testing';
import { parseOciLayoutValue, selectOciLayout } from './oci-layout';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'stratum-cli-layout-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A layout with one image (`config`, one layer) and an index of it for linux/amd64. */
function layout(tags: { image?: string; index?: string }): { image: string; index: string; layer: string } {
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: ['sha256:' + hex('l')] },
  });
  const layer = 'l';
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: `sha256:${hex(config)}`,
      size: config.length,
    },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${hex(layer)}`, size: 1 },
    ],
  });
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: `sha256:${hex(manifest)}`,
        size: manifest.length,
        platform: { os: 'linux', architecture: 'amd64' },
      },
    ],
  });
  const entry = (body: string, mediaType: string, tag?: string): unknown => ({
    mediaType,
    digest: `sha256:${hex(body)}`,
    size: body.length,
    ...(tag !== undefined ? { annotations: { 'org.opencontainers.image.ref.name': tag } } : {}),
  });
  writeTree(
    {
      'oci-layout': '{"imageLayoutVersion":"1.0.0"}',
      'index.json': JSON.stringify({
        schemaVersion: 2,
        manifests: [
          entry(manifest, 'application/vnd.oci.image.manifest.v1+json', tags.image),
          ...(tags.index !== undefined
            ? [entry(index, 'application/vnd.oci.image.index.v1+json', tags.index)]
            : []),
        ],
      }),
      [`blobs/sha256/${hex(config)}`]: config,
      [`blobs/sha256/${hex(layer)}`]: layer,
      [`blobs/sha256/${hex(manifest)}`]: manifest,
      [`blobs/sha256/${hex(index)}`]: index,
    },
    dir,
  );
  return { image: `sha256:${hex(manifest)}`, index: `sha256:${hex(index)}`, layer: `sha256:${hex(layer)}` };
}

describe('parseOciLayoutValue', () => {
  it('reads a path with :tag or @digest, relative to the working directory', () => {
    const d = `sha256:${'a'.repeat(64)}`;
    expect(parseOciLayoutValue('oci-layout:///srv/l:v1', '/w')).toEqual({
      dir: '/srv/l',
      tag: 'v1',
      digest: null,
    });
    expect(parseOciLayoutValue(`oci-layout:///srv/l@${d}`, '/w')).toEqual({
      dir: '/srv/l',
      tag: null,
      digest: d,
    });
    expect(parseOciLayoutValue('oci-layout://./l', '/w')).toEqual({ dir: '/w/l', tag: null, digest: null });
    expect(parseOciLayoutValue('oci-layout:///a:b/l', '/w')).toEqual({
      dir: '/a:b/l',
      tag: null,
      digest: null,
    });
    expect(() => parseOciLayoutValue('oci-layout://', '/w')).toThrow(/expected oci-layout:\/\/<directory>/);
  });
});

describe('selectOciLayout', () => {
  it('picks by tag, by digest, or the only image, with the blobs it needs', async () => {
    const l = layout({ image: 'v1' });
    const picked = await selectOciLayout({ dir, tag: 'v1', digest: null }, undefined);
    expect(picked.root).toBe(l.image);
    expect(picked.files).toContain(`blobs/sha256/${l.layer.slice(7)}`);
    expect(picked.files).not.toContain(`blobs/sha256/${l.index.slice(7)}`);
    expect((await selectOciLayout({ dir, tag: null, digest: null }, undefined)).root).toBe(l.image);
    expect((await selectOciLayout({ dir, tag: null, digest: l.index }, undefined)).root).toBe(l.index);
  });

  it('says what is missing: the layout, the tag, the platform in an index', async () => {
    await expect(
      selectOciLayout({ dir: join(dir, 'none'), tag: null, digest: null }, undefined),
    ).rejects.toThrow(/no OCI image layout there \(no oci-layout file\)/);
    const l = layout({ image: 'v1', index: 'multi' });
    await expect(selectOciLayout({ dir, tag: 'v2', digest: null }, undefined)).rejects.toThrow(
      'the tag "v2" is not in index.json (it has v1, multi)',
    );
    // Two images and no tag: buildx's default, latest.
    await expect(selectOciLayout({ dir, tag: null, digest: null }, undefined)).rejects.toThrow(
      /the tag "latest"/,
    );
    expect((await selectOciLayout({ dir, tag: 'multi', digest: null }, 'linux/amd64')).root).toBe(l.index);
    await expect(
      selectOciLayout({ dir, tag: 'multi', digest: null }, 'linux/amd64,linux/arm64'),
    ).rejects.toThrow(
      `the index ${l.index} has no image for the build's platform linux/arm64 (it has linux/amd64)`,
    );
    rmSync(join(dir, 'blobs/sha256', l.layer.slice(7)));
    await expect(selectOciLayout({ dir, tag: 'v1', digest: null }, undefined)).rejects.toThrow(
      `the layout has no layer ${l.layer}`,
    );
  });
});
