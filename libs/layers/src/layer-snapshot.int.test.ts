import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  applyLayer,
  compressLayer,
  createTarFromDirectory,
  mountOverlay,
  snapshotDirectory,
  unmountOverlay,
  type LayerStream,
} from '.';
import {
  busyboxTar,
  collect,
  describeTree,
  fileStream,
  sh,
  sha256,
  streamOf,
  tempDir,
} from '../test-support/tree';
import { requireTools } from '@stratum/testing';

jest.setTimeout(120_000);

let scratch: string;
const mounted: string[] = [];
beforeAll(async () => {
  scratch = await tempDir();
});
afterAll(async () => {
  for (const m of mounted.reverse()) {
    await unmountOverlay(m, { lazy: true });
  }
  await rm(scratch, { recursive: true, force: true });
});

let n = 0;
async function fresh(): Promise<string> {
  const d = join(scratch, `t${n++}`);
  await mkdir(d);
  return d;
}

async function mount(lowerDirs: string[]): Promise<{ upper: string; merged: string }> {
  const base = await fresh();
  const spec = {
    lowerDirs,
    upperDir: join(base, 'upper'),
    workDir: join(base, 'work'),
    target: join(base, 'merged'),
  };
  await mountOverlay(spec);
  mounted.push(spec.target);
  return { upper: spec.upperDir, merged: spec.target };
}

async function unmount(target: string): Promise<void> {
  await unmountOverlay(target);
  mounted.splice(mounted.indexOf(target), 1);
}

/** Writes the layer blob to a file, like the caller piping into blob storage. */
async function store(layer: LayerStream, file: string): Promise<Awaited<LayerStream['done']>> {
  const [, digests] = await Promise.all([pipeline(layer.stream, createWriteStream(file)), layer.done]);
  return digests;
}

async function busyboxLower(): Promise<string> {
  const lower = await fresh();
  await applyLayer(fileStream(await busyboxTar(scratch)), lower);
  sh(
    'mkdir -p opt/app opt/other && echo a > opt/app/a && echo b > opt/app/b && echo o > opt/other/o && touch -d @1600000000 opt/app opt/other opt',
    lower,
  );
  return lower;
}

describe('snapshotDirectory: overlay round trip', () => {
  it('a layer of the upper dir, applied to a copy of the lower, reproduces the merged view', async () => {
    const lower = await busyboxLower();
    const { upper, merged } = await mount([lower]);
    sh(
      [
        'echo new > newfile',
        'mkdir -p newdir/sub && echo deep > newdir/sub/f',
        'echo extra >> etc/passwd', // modify a lower file
        'rm etc/group', // delete a lower file
        'rm bin/ls', // delete a lower symlink
        'rm -rf opt/app && mkdir opt/app && echo c > opt/app/c', // delete a lower dir, recreate -> opaque
        'rm -rf sys', // delete a lower dir
        'mv bin/cat bin/kat', // rename a lower entry
        'mv opt/other opt/moved', // rename a lower dir (redirect_dir=off: copied)
        'chmod 4755 newfile && chown 1000:1001 newfile',
        'ln newfile newfile-hardlink',
        'ln -s /bin/busybox bb-link',
        'mkfifo fifo && mknod dev/null c 1 3',
        'chmod 1777 newdir',
        'setfattr -n user.stratum -v hello newfile',
        'mkdir -p ' +
          'x'.repeat(90) +
          '/' +
          'y'.repeat(90) +
          ' && echo long > ' +
          'x'.repeat(90) +
          '/' +
          'y'.repeat(90) +
          '/' +
          'z'.repeat(120),
      ].join(' && '),
      merged,
    );
    const want = await describeTree(merged);
    expect(want['opt/app/a']).toBeUndefined();
    await unmount(merged);

    const blob = join(scratch, 'roundtrip.tar.gz');
    const digests = await store(snapshotDirectory(upper, { compression: 'gzip' }), blob);
    const bytes = await readFile(blob);
    expect(digests.digest).toBe(sha256(bytes));
    expect(digests.size).toBe(bytes.length);
    expect(digests.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const plain = sh(`gzip -dc ${blob} | sha256sum`).split(' ')[0];
    expect(digests.diffId).toBe(`sha256:${plain}`);

    const listing = sh(`tar -tvf ${blob}`);
    expect(listing).toContain('opt/app/.wh..wh..opq');
    expect(listing).toContain('etc/.wh.group');
    expect(listing).toContain('.wh.sys');
    expect(listing).toContain('bin/.wh.ls');
    expect(listing.indexOf('bin/.wh.ls')).toBeLessThan(listing.indexOf('bin/kat'));
    expect(listing).toMatch(/newfile-hardlink link to newfile/);
    expect(listing).not.toMatch(/ bin\/busybox$/m); // untouched lower content is not in the layer

    const copy = await fresh();
    sh(`cp -a ${lower}/. ${copy}/`);
    const applied = await applyLayer(fileStream(blob), copy);
    expect(applied.diffId).toBe(digests.diffId);
    expect(await describeTree(copy)).toEqual(want);
  });

  it('converts upper dirs only and refuses redirect xattrs', async () => {
    const upper = await fresh();
    sh('mkdir d && setfattr -n trusted.overlay.redirect -v /elsewhere d', upper);
    const layer = snapshotDirectory(upper, { compression: 'none' });
    await expect(Promise.all([collect(layer.stream), layer.done])).rejects.toMatchObject({
      code: 'LAYER_UNSUPPORTED_OVERLAY',
    });
  });
});

describe('snapshotDirectory: determinism', () => {
  it('gives identical digests for the same tree, twice and from a copy, in every compression', async () => {
    const lower = await busyboxLower();
    const { upper, merged } = await mount([lower]);
    sh(
      'echo hi > a && rm -rf opt/app && mkdir opt/app && rm etc/group && ln a b && touch -d @1700000000 a',
      merged,
    );
    await unmount(merged);
    const copy = join(await fresh(), 'copy');
    sh(`cp -a ${upper} ${copy}`);
    for (const compression of ['gzip', 'zstd', 'none'] as const) {
      const results = [];
      for (const dir of [upper, upper, copy]) {
        const layer = snapshotDirectory(dir, { compression });
        const [bytes, d] = await Promise.all([collect(layer.stream), layer.done]);
        expect(sha256(bytes)).toBe(d.digest);
        results.push(d);
      }
      expect(results[1]).toEqual(results[0]);
      expect(results[2]).toEqual(results[0]);
      if (compression === 'none') {
        expect(results[0].digest).toBe(results[0].diffId);
      }
    }
    // node zlib fallback is deterministic too (and gives the same diffID)
    const z1 = snapshotDirectory(upper, { gzipImplementation: 'zlib' });
    const z2 = snapshotDirectory(copy, { gzipImplementation: 'zlib' });
    const [, d1, , d2] = await Promise.all([collect(z1.stream), z1.done, collect(z2.stream), z2.done]);
    expect(d1.digest).toBe(d2.digest);
  });

  it('clamps mtimes to sourceDateEpoch and writes empty uname/gname', async () => {
    const dir = await fresh();
    sh('echo x > f && mkdir d && touch -d @2000000000 f d', dir);
    const layer = createTarFromDirectory(dir, { compression: 'none', sourceDateEpoch: 1_000_000_000 });
    const [bytes] = await Promise.all([collect(layer.stream), layer.done]);
    const tarFile = join(scratch, 'clamped.tar');
    await writeFile(tarFile, bytes);
    const listing = sh(`TZ=UTC tar --numeric-owner -tvf ${tarFile} --full-time`);
    expect(listing).toContain('2001-09-09 01:46:40');
    expect(listing).not.toContain('2033');
    expect(bytes.subarray(265, 265 + 64).every((b) => b === 0)).toBe(true); // uname + gname
  });
});

describe('compressLayer', () => {
  it('imports a plain rootfs tar: diffID is the tar digest, the blob round-trips', async () => {
    const tarPath = await busyboxTar(scratch);
    const tar = await readFile(tarPath);
    for (const compression of ['gzip', 'zstd', 'none'] as const) {
      const layer = compressLayer(streamOf(tar), { compression });
      const [blob, d] = await Promise.all([collect(layer.stream), layer.done]);
      expect(d.diffId).toBe(sha256(tar));
      expect(d.uncompressedSize).toBe(tar.length);
      expect(d.digest).toBe(sha256(blob));
      const target = await fresh();
      expect((await applyLayer(streamOf(blob), target)).diffId).toBe(d.diffId);
    }
  });

  it('reports a failing source through done and the stream', async () => {
    const { Readable } = await import('node:stream');
    const source = new Readable({
      read(): void {
        this.destroy(new Error('source broke'));
      },
    });
    const layer = compressLayer(source, { compression: 'zstd' });
    await expect(Promise.all([collect(layer.stream), layer.done])).rejects.toThrow('source broke');
  });
});

describe('snapshot cost', () => {
  it('a one-file change on a big lower gives a tiny layer, fast', async () => {
    const lower = await fresh();
    // ~200 MB and 20k files below; only the upper dir is walked.
    sh(
      'for i in $(seq 1 200); do head -c 1048576 /dev/urandom > big$i; done; mkdir many && cd many && for d in $(seq 1 20); do mkdir d$d; for f in $(seq 1 1000); do echo $f > d$d/f$f; done; done',
      lower,
    );
    const { upper, merged } = await mount([lower]);
    sh('echo changed > many/d7/f7', merged);
    await unmount(merged);
    const started = Date.now();
    const layer = snapshotDirectory(upper, { compression: 'gzip' });
    const [, d] = await Promise.all([collect(layer.stream), layer.done]);
    const elapsed = Date.now() - started;
    expect(d.uncompressedSize).toBeLessThanOrEqual(4 * 512 + 1024);
    expect(d.size).toBeLessThan(1024);
    expect(elapsed).toBeLessThan(2000);
  });
});

describe('umoci interop', () => {
  it('umoci raw unpack of an OCI layout with our layers gives the merged tree', async () => {
    requireTools('umoci');
    const lower = await fresh();
    await applyLayer(fileStream(await busyboxTar(scratch)), lower);
    const { upper, merged } = await mount([lower]);
    sh(
      'echo new > newfile && rm etc/group && rm -rf bin && mkdir bin && echo sh > bin/sh && ln newfile hl',
      merged,
    );
    const want = await describeTree(merged, { xattrs: false, dirMtimes: false });
    await unmount(merged);

    const layout = await fresh();
    await mkdir(join(layout, 'blobs/sha256'), { recursive: true });
    const put = async (layer: LayerStream): Promise<Awaited<LayerStream['done']>> => {
      const tmp = join(layout, 'blob.tmp');
      const d = await store(layer, tmp);
      sh(`mv ${tmp} blobs/sha256/${d.digest.slice(7)}`, layout);
      return d;
    };
    const putJson = async (value: unknown): Promise<{ digest: string; size: number }> => {
      const bytes = Buffer.from(JSON.stringify(value));
      const digest = sha256(bytes);
      await writeFile(join(layout, 'blobs/sha256', digest.slice(7)), bytes);
      return { digest, size: bytes.length };
    };
    const base = await put(compressLayer(fileStream(await busyboxTar(scratch)), { compression: 'gzip' }));
    const top = await put(snapshotDirectory(upper, { compression: 'gzip' }));
    const config = await putJson({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [base.diffId, top.diffId] },
    });
    const manifest = await putJson({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [base, top].map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    });
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            annotations: { 'org.opencontainers.image.ref.name': 'test' },
          },
        ],
      }),
    );
    const rootfs = join(await fresh(), 'rootfs');
    sh(`umoci raw unpack --image ${layout}:test ${rootfs}`);
    expect(await describeTree(rootfs, { xattrs: false, dirMtimes: false })).toEqual(want);
  });
});
