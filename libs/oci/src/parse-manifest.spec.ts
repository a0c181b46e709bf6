import { encodeJson } from './canonical-json';
import { sha256Digest } from './digest';
import { MediaType } from './media-types';
import { manifestReferences, parseImageConfig, parseManifest, ParseManifestResult } from './parse-manifest';

const d = (s: string) => sha256Digest(s);
const layer = { mediaType: MediaType.OciLayerTarGzip, digest: d('layer'), size: 32 };
const ociManifest = {
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: MediaType.OciConfig, digest: d('config'), size: 120 },
  layers: [layer],
  annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
};
const ociIndex = {
  schemaVersion: 2,
  mediaType: MediaType.OciIndex,
  manifests: [
    {
      mediaType: MediaType.OciManifest,
      digest: d('amd64'),
      size: 400,
      platform: { architecture: 'amd64', os: 'linux' },
    },
    {
      mediaType: MediaType.OciManifest,
      digest: d('arm64'),
      size: 401,
      platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
    },
  ],
};
const dockerManifest = {
  schemaVersion: 2,
  mediaType: MediaType.DockerManifest,
  config: { mediaType: MediaType.DockerConfig, digest: d('config'), size: 1469 },
  layers: [{ mediaType: MediaType.DockerLayerGzip, digest: d('l1'), size: 2_811_478 }],
};
const dockerList = {
  schemaVersion: 2,
  mediaType: MediaType.DockerManifestList,
  manifests: [
    {
      mediaType: MediaType.DockerManifest,
      digest: d('m'),
      size: 528,
      platform: { architecture: 'arm', os: 'linux', variant: 'v7' },
    },
  ],
};

function expectOk(r: ParseManifestResult): asserts r is Extract<ParseManifestResult, { ok: true }> {
  if (!r.ok) {
    throw new Error(`expected ok, got ${r.code}: ${r.message} ${r.issues.join('; ')}`);
  }
}

function expectRejected(r: ParseManifestResult, code: 'MANIFEST_INVALID' | 'MANIFEST_UNSUPPORTED'): void {
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.code).toBe(code);
  }
}

describe('parseManifest', () => {
  it('parses an OCI image manifest and digests the exact bytes', () => {
    const bytes = Buffer.from(JSON.stringify(ociManifest, null, 2));
    const r = parseManifest(bytes);
    expectOk(r);
    expect(r.kind).toBe('oci-manifest');
    expect(r.digest).toBe(sha256Digest(bytes));
    expect(r.size).toBe(bytes.length);
    if (r.kind === 'oci-manifest') {
      expect(r.manifest.layers[0]?.digest).toBe(layer.digest);
    }
  });

  it('parses an OCI index, a Docker manifest and a Docker manifest list', () => {
    expect(parseManifest(encodeJson(ociIndex).bytes)).toMatchObject({ ok: true, kind: 'oci-index' });
    expect(parseManifest(encodeJson(dockerManifest).bytes)).toMatchObject({
      ok: true,
      kind: 'docker-manifest',
    });
    expect(parseManifest(JSON.stringify(dockerList))).toMatchObject({
      ok: true,
      kind: 'docker-manifest-list',
    });
  });

  it('uses the Content-Type hint when the document has no mediaType', () => {
    const { mediaType: _m, ...bare } = ociManifest;
    const r = parseManifest(JSON.stringify(bare), `${MediaType.OciManifest}; charset=utf-8`);
    expect(r).toMatchObject({ ok: true, kind: 'oci-manifest', mediaType: MediaType.OciManifest });
    // Docker schema 2 allows the hint to supply it too.
    const { mediaType: _d, ...bareDocker } = dockerManifest;
    expect(parseManifest(JSON.stringify(bareDocker), MediaType.DockerManifest)).toMatchObject({
      ok: true,
      kind: 'docker-manifest',
    });
  });

  it('infers the kind from the shape when nothing names it', () => {
    const { mediaType: _m, ...bare } = ociManifest;
    expect(parseManifest(JSON.stringify(bare))).toMatchObject({ ok: true, kind: 'oci-manifest' });
    expect(parseManifest(JSON.stringify(bare), 'application/json')).toMatchObject({
      ok: true,
      kind: 'oci-manifest',
    });
    const { mediaType: _i, ...bareIndex } = ociIndex;
    expect(parseManifest(JSON.stringify(bareIndex))).toMatchObject({ ok: true, kind: 'oci-index' });
  });

  it('refuses a mediaType that contradicts the Content-Type', () => {
    expectRejected(parseManifest(JSON.stringify(ociManifest), MediaType.DockerManifest), 'MANIFEST_INVALID');
  });

  it.each([
    ['not JSON', '{nope'],
    ['a JSON array', '[]'],
    ['null', 'null'],
    ['no kind at all', '{"schemaVersion":2}'],
    ['schemaVersion 3', JSON.stringify({ ...ociManifest, schemaVersion: 3 })],
    ['a bad layer digest', JSON.stringify({ ...ociManifest, layers: [{ ...layer, digest: 'sha256:xyz' }] })],
    ['a negative size', JSON.stringify({ ...ociManifest, layers: [{ ...layer, size: -1 }] })],
    ['a fractional size', JSON.stringify({ ...ociManifest, layers: [{ ...layer, size: 1.5 }] })],
    ['a bad media type', JSON.stringify({ ...ociManifest, layers: [{ ...layer, mediaType: 'not a type' }] })],
    ['a missing config', JSON.stringify({ ...ociManifest, config: undefined })],
    ['annotations that are not strings', JSON.stringify({ ...ociManifest, annotations: { a: 1 } })],
    [
      'a list entry without platform',
      JSON.stringify({ ...dockerList, manifests: [{ ...dockerList.manifests[0], platform: undefined }] }),
    ],
    [
      'a Docker manifest with an OCI config type',
      JSON.stringify({ ...dockerManifest, config: ociManifest.config }),
    ],
  ])('rejects %s as MANIFEST_INVALID', (_name, body) => {
    const r = parseManifest(body);
    expectRejected(r, 'MANIFEST_INVALID');
  });

  it('reports schema issues with their paths', () => {
    const r = parseManifest(JSON.stringify({ ...ociManifest, layers: [{ ...layer, size: -1 }] }));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.issues.join('\n')).toMatch(/layers\.0\.size/);
    }
  });

  it('rejects invalid UTF-8', () => {
    expectRejected(parseManifest(Buffer.from([0x7b, 0xff, 0x7d])), 'MANIFEST_INVALID');
  });

  it('refuses schema 1 and unknown media types as MANIFEST_UNSUPPORTED', () => {
    expectRejected(
      parseManifest('{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}'),
      'MANIFEST_UNSUPPORTED',
    );
    expectRejected(
      parseManifest(JSON.stringify({ ...ociManifest, mediaType: 'application/vnd.example+json' })),
      'MANIFEST_UNSUPPORTED',
    );
  });

  it('accepts artifacts with subject, artifactType and the empty config', () => {
    const artifact = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/vnd.example.sbom.v1+json',
      config: { mediaType: MediaType.OciEmpty, digest: sha256Digest('{}'), size: 2, data: 'e30=' },
      layers: [{ mediaType: 'application/spdx+json', digest: d('sbom'), size: 10 }],
      subject: { mediaType: MediaType.OciManifest, digest: d('image'), size: 500 },
    };
    const r = parseManifest(JSON.stringify(artifact));
    expectOk(r);
    expect(manifestReferences(r)).toEqual({
      blobs: [artifact.config, artifact.layers[0]],
      manifests: [artifact.subject],
    });
  });
});

describe('manifestReferences', () => {
  it('lists blobs of image manifests and children of indexes', () => {
    const m = parseManifest(JSON.stringify(dockerManifest));
    expectOk(m);
    expect(manifestReferences(m).blobs.map((b) => b.digest)).toEqual([d('config'), d('l1')]);
    const i = parseManifest(JSON.stringify(ociIndex));
    expectOk(i);
    expect(manifestReferences(i)).toEqual({ blobs: [], manifests: ociIndex.manifests });
    const l = parseManifest(JSON.stringify(dockerList));
    expectOk(l);
    expect(manifestReferences(l).manifests).toHaveLength(1);
  });
});

describe('parseImageConfig', () => {
  const config = {
    architecture: 'amd64',
    os: 'linux',
    created: '2024-05-01T10:00:00.123456789Z',
    author: 'Stratum',
    config: {
      User: 'app',
      ExposedPorts: { '8080/tcp': {} },
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Entrypoint: ['/entrypoint.sh'],
      Cmd: null,
      Volumes: { '/data': {} },
      WorkingDir: '/app',
      Labels: { 'org.opencontainers.image.source': 'https://example.com/repo' },
      StopSignal: 'SIGTERM',
      Healthcheck: { Test: ['CMD', 'true'], Interval: 30_000_000_000, Retries: 3 },
      OnBuild: null,
      Shell: ['/bin/sh', '-c'],
      ArgsEscaped: true,
    },
    rootfs: { type: 'layers', diff_ids: [d('diff1'), d('diff2')] },
    history: [
      { created: '2024-05-01T10:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:abc in /' },
      { created_by: 'ENV X=1', empty_layer: true, comment: 'buildkit.dockerfile.v0' },
    ],
    // Unmodelled fields survive.
    variant: 'v8',
    docker_version: '24.0.0',
    container_config: { Hostname: 'abc' },
  };

  it('parses a Docker-style config and keeps unknown fields', () => {
    const r = parseImageConfig(JSON.stringify(config));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.config.config?.Cmd).toBeNull();
      expect(r.config.rootfs.diff_ids).toHaveLength(2);
      expect(r.config.history?.[1]?.empty_layer).toBe(true);
      expect(r.config.docker_version).toBe('24.0.0');
      expect(r.config.container_config).toEqual({ Hostname: 'abc' });
      expect(JSON.parse(encodeJson(r.config).bytes.toString())).toEqual(config);
    }
  });

  it('parses a minimal config', () => {
    expect(
      parseImageConfig('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'),
    ).toMatchObject({ ok: true });
  });

  it.each([
    ['no rootfs', { architecture: 'amd64', os: 'linux' }],
    ['no os', { architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] } }],
    ['wrong rootfs type', { ...config, rootfs: { type: 'squash', diff_ids: [] } }],
    ['bad diff id', { ...config, rootfs: { type: 'layers', diff_ids: ['nope'] } }],
    ['Env not strings', { ...config, config: { Env: [1] } }],
    ['empty_layer not boolean', { ...config, history: [{ empty_layer: 'yes' }] }],
  ])('rejects %s', (_name, body) => {
    const r = parseImageConfig(JSON.stringify(body));
    expect(r.ok).toBe(false);
  });

  it('rejects non-JSON', () => {
    expect(parseImageConfig('nope')).toMatchObject({ ok: false });
  });
});
