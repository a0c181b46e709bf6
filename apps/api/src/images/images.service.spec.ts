import { Readable } from 'node:stream';
import { StratumConfig } from '@stratum/config';
import { ImageService, LayerDescriptor } from '@stratum/images';
import { LayerStream } from '@stratum/layers';
import { ImagesApiService } from './images.service';

const LAYER: LayerDescriptor = {
  digest: `sha256:${'a'.repeat(64)}`,
  diffId: `sha256:${'b'.repeat(64)}`,
  size: 10,
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

/** An ImageService whose store finishes before the tar check does (the orphan case). */
function fakeImages(created: boolean) {
  const calls = { discarded: [] as LayerDescriptor[], written: 0 };
  const images = {
    putLayer: async (layer: LayerStream) => {
      layer.stream.on('error', () => undefined).resume();
      layer.done.catch(() => undefined);
      return { layer: LAYER, created };
    },
    discardLayer: async (l: LayerDescriptor) => {
      calls.discarded.push(l);
    },
    write: async () => {
      calls.written++;
      return { manifestDigest: LAYER.digest, configDigest: LAYER.diffId, manifestSize: 1 };
    },
  };
  return { images: images as unknown as ImageService, calls };
}

const config = {
  maxContextBytes: 1024 * 1024,
  registryClients: {
    mirrors: [{ prefix: 'hub', upstream: 'https://registry-1.docker.io', username: null, password: null }],
    credentials: [],
    insecureHosts: [],
  },
} as unknown as StratumConfig;
const query = { repository: 'r', tag: 't', message: '', change: [] };
const notTar = (): Readable => Readable.from([Buffer.from('not a tar archive\n'.repeat(100))]);

function tarOf(name: string, content: string): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) {
    sum += b;
  }
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const body = Buffer.alloc(512);
  body.write(content);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

describe('ImagesApiService.import', () => {
  it('deletes the blob it created when the tar check fails after the store took it', async () => {
    const { images, calls } = fakeImages(true);
    await expect(new ImagesApiService(config, images).import(notTar(), query)).rejects.toMatchObject({
      code: 'LAYER_INVALID',
    });
    expect(calls.discarded).toEqual([LAYER]);
    expect(calls.written).toBe(0);
  });

  it('keeps a blob the store already had', async () => {
    const { images, calls } = fakeImages(false);
    await expect(new ImagesApiService(config, images).import(notTar(), query)).rejects.toMatchObject({
      code: 'LAYER_INVALID',
    });
    expect(calls.discarded).toEqual([]);
  });

  it('writes the image when the tar is good', async () => {
    const { images, calls } = fakeImages(true);
    const body = Readable.from([tarOf('hello.txt', 'hi\n')]);
    await expect(new ImagesApiService(config, images).import(body, query)).resolves.toMatchObject({
      repository: 'r',
      tag: 't',
    });
    expect(calls).toEqual({ discarded: [], written: 1 });
  });

  it('refuses a repository under a pull-through mirror prefix before storing anything', async () => {
    const { images, calls } = fakeImages(true);
    let read = false;
    const body = new Readable({
      read() {
        read = true;
        this.push(null);
      },
    });
    await expect(
      new ImagesApiService(config, images).import(body, { ...query, repository: 'hub/library/alpine' }),
    ).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/"hub\/library\/alpine:t".*pull-through mirror prefix "hub\/"/),
    });
    expect(read).toBe(false);
    expect(calls).toEqual({ discarded: [], written: 0 });
  });
});

describe('ImagesApiService.tag', () => {
  it('refuses a tag under a pull-through mirror prefix, naming it', async () => {
    let tagged = 0;
    const images = {
      tag: async () => {
        tagged++;
        return { manifestDigest: LAYER.digest };
      },
    } as unknown as ImageService;
    const service = new ImagesApiService(config, images);
    await expect(service.tag('ns/app:v1', { repository: 'hub', tag: 'x' })).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringContaining('"hub:x"'),
    });
    await expect(service.tag('ns/app:v1', { repository: 'hubble/app', tag: 'x' })).resolves.toMatchObject({
      repository: 'hubble/app',
    });
    expect(tagged).toBe(1);
  });
});
