import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { FsBlobStore } from '@stratum/storage';
import { ByteReader, encodeHeader, END_OF_ARCHIVE, padding, readTar, TarEntryType } from '@stratum/tar';
import { exportFilesystem } from './image-export';
import { LayerDescriptor } from './image-types';

type Item = [path: string, type: TarEntryType, content?: string];

function layerTar(items: Item[]): Buffer {
  const parts: Buffer[] = [];
  for (const [path, type, content = ''] of items) {
    const body = Buffer.from(type === 'file' ? content : '');
    parts.push(
      encodeHeader({
        path: type === 'dir' ? `${path}/` : path,
        type,
        mode: type === 'dir' ? 0o755 : 0o644,
        uid: 1000,
        gid: 1000,
        size: body.length,
        mtime: 1_700_000_000,
        linkpath: type === 'link' || type === 'symlink' ? content : '',
      }),
      body,
      Buffer.alloc(padding(body.length)),
    );
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

const root = mkdtempSync(join(tmpdir(), 'stratum-image-export-'));
const blobs = new FsBlobStore(root);
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function layer(items: Item[], gzip = true): Promise<LayerDescriptor> {
  const tar = layerTar(items);
  const bytes = gzip ? gzipSync(tar) : tar;
  const put = await blobs.put(Readable.from([bytes]));
  return {
    digest: put.digest,
    diffId: put.digest,
    size: bytes.length,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
  };
}

async function flatten(layers: LayerDescriptor[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const chunks: Buffer[] = [];
  for await (const c of exportFilesystem(blobs, layers)) {
    chunks.push(c);
  }
  const bytes = Buffer.concat(chunks);
  for await (const e of readTar(new ByteReader(Readable.from([bytes])))) {
    let text = '';
    for await (const c of e.body()) {
      text += c.toString();
    }
    const what = e.type === 'file' ? text : e.type === 'dir' ? '' : e.linkpath;
    out.set(e.path.replace(/\/$/, ''), `${e.type}${what === '' ? '' : ` ${what}`} ${e.uid}:${e.gid}`);
  }
  return out;
}

it('merges layers as overlayfs shows them: whiteouts, opaque dirs, replaced paths, hard links', async () => {
  const base = await layer([
    ['etc', 'dir'],
    ['etc/keep', 'file', 'keep'],
    ['etc/gone', 'file', 'gone'],
    ['etc/changed', 'file', 'old'],
    ['opq', 'dir'],
    ['opq/old', 'file', 'old'],
    ['was-dir', 'dir'],
    ['was-dir/child', 'file', 'hidden'],
    ['h', 'file', 'linked'],
    ['h2', 'link', 'h'],
  ]);
  const top = await layer(
    [
      ['etc', 'dir'],
      ['etc/.wh.gone', 'file'],
      ['etc/changed', 'file', 'new'],
      ['opq', 'dir'],
      ['opq/.wh..wh..opq', 'file'],
      ['opq/new', 'file', 'new'],
      ['was-dir', 'symlink', '/etc'],
      ['.wh.h', 'file'],
    ],
    false,
  );
  const tree = await flatten([base, top]);
  expect(Object.fromEntries([...tree].sort())).toEqual({
    etc: 'dir 1000:1000',
    'etc/changed': 'file new 1000:1000',
    'etc/keep': 'file keep 1000:1000',
    opq: 'dir 1000:1000',
    'opq/new': 'file new 1000:1000',
    'was-dir': 'symlink /etc 1000:1000',
    // h was deleted above; its hard link h2 still shows the content, now as a file of its own
    h2: 'file linked 1000:1000',
  });
});

it('keeps a hard link whose target is in its own layer', async () => {
  const only = await layer([
    ['a', 'file', 'x'],
    ['b', 'link', 'a'],
  ]);
  expect(Object.fromEntries(await flatten([only]))).toEqual({ a: 'file x 1000:1000', b: 'link a 1000:1000' });
});
