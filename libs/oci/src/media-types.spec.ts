import {
  ALL_MANIFEST_MEDIA_TYPES,
  isIndexMediaType,
  isLayerMediaType,
  isManifestMediaType,
  layerCompression,
  layerMediaType,
  MediaType,
  normalizeMediaType,
} from './media-types';

describe('media types', () => {
  it('has the spec strings', () => {
    expect(MediaType.OciManifest).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(MediaType.OciLayerTarZstd).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(MediaType.DockerManifestList).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    expect(MediaType.DockerLayerGzip).toBe('application/vnd.docker.image.rootfs.diff.tar.gzip');
    expect(ALL_MANIFEST_MEDIA_TYPES).toHaveLength(4);
  });

  it('normalizes Content-Type values', () => {
    expect(normalizeMediaType(' Application/VND.OCI.image.manifest.v1+JSON ; charset=utf-8')).toBe(
      MediaType.OciManifest,
    );
  });

  it('classifies manifests, indexes and layers', () => {
    expect(isManifestMediaType(MediaType.DockerManifest)).toBe(true);
    expect(isManifestMediaType(MediaType.OciIndex)).toBe(false);
    expect(isIndexMediaType(`${MediaType.OciIndex}; charset=utf-8`)).toBe(true);
    expect(isLayerMediaType(MediaType.OciLayerTar)).toBe(true);
    expect(isLayerMediaType(MediaType.OciConfig)).toBe(false);
  });

  it('maps layer types to compressions and back', () => {
    expect(layerCompression(MediaType.OciLayerTar)).toBe('none');
    expect(layerCompression(MediaType.OciLayerTarGzip)).toBe('gzip');
    expect(layerCompression(MediaType.OciLayerTarZstd)).toBe('zstd');
    expect(layerCompression(MediaType.DockerLayerGzip)).toBe('gzip');
    expect(layerCompression('application/json')).toBeNull();
    expect(layerMediaType('zstd')).toBe(MediaType.OciLayerTarZstd);
    expect(layerMediaType('none')).toBe(MediaType.OciLayerTar);
    expect(layerMediaType('gzip', 'docker')).toBe(MediaType.DockerLayerGzip);
    expect(() => layerMediaType('zstd', 'docker')).toThrow();
  });
});
