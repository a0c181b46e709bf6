import { createHash } from 'node:crypto';
import { encodeHeader, END_OF_ARCHIVE, padding, type EncodableHeader } from './tar-format';
import { ByteReader, readTar } from './tar-reader';

function tar(entries: { h: EncodableHeader; body?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { h, body } of entries) {
    parts.push(encodeHeader(h));
    if (body !== undefined) {
      parts.push(body, Buffer.alloc(padding(body.length)));
    }
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** Yields `buf` in chunks of `size` bytes, so entries straddle chunk boundaries. */
async function* chunks(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) {
    yield buf.subarray(i, i + size);
  }
}

describe('readTar', () => {
  const long = `${'d'.repeat(150)}/${'é'.repeat(80)}`;
  const bytes = tar([
    { h: { path: 'dir/', type: 'dir', mode: 0o755, size: 0, mtime: 1, linkpath: '' } },
    {
      h: { path: 'dir/file', type: 'file', mode: 0o640, size: 5, mtime: 2, linkpath: '', uid: 7, gid: 8 },
      body: Buffer.from('hello'),
    },
    {
      h: { path: long, type: 'file', mode: 0o644, size: 1000, mtime: 3, linkpath: '' },
      body: Buffer.alloc(1000, 7),
    },
    { h: { path: 'ln', type: 'symlink', mode: 0o777, size: 0, mtime: 4, linkpath: 'l'.repeat(300) } },
  ]);

  it('streams what the encoder wrote (pax names, owners, bodies) and hashes the whole stream', async () => {
    for (const size of [1, 100, 512, 7000]) {
      const reader = new ByteReader(chunks(bytes, size), { hash: createHash('sha256') });
      const seen: string[] = [];
      for await (const e of readTar(reader)) {
        const body: Buffer[] = [];
        for await (const c of e.body()) {
          body.push(c);
        }
        seen.push(
          `${e.type} ${e.path.length} ${e.mode.toString(8)} ${e.uid}:${e.gid} ${Buffer.concat(body).length}`,
        );
        if (e.type === 'symlink') {
          expect(e.linkpath).toBe('l'.repeat(300));
        }
      }
      expect(seen).toEqual([
        'dir 4 755 0:0 0',
        'file 8 640 7:8 5',
        `file ${long.length} 644 0:0 1000`,
        'symlink 2 777 0:0 0',
      ]);
      expect(reader.total).toBe(bytes.length);
      expect(reader.hash?.digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('skips bodies nobody reads', async () => {
    const paths: string[] = [];
    for await (const e of readTar(new ByteReader(chunks(bytes, 333)))) {
      paths.push(e.path);
    }
    expect(paths).toEqual(['dir/', 'dir/file', long, 'ln']);
  });

  it('fails with TAR_TOO_LARGE past maxBytes, and TAR_INVALID on a truncated stream', async () => {
    const read = async (reader: ByteReader): Promise<void> => {
      for await (const e of readTar(reader)) {
        void e;
      }
    };
    await expect(read(new ByteReader(chunks(bytes, 512), { maxBytes: 2048 }))).rejects.toMatchObject({
      code: 'TAR_TOO_LARGE',
      message: expect.stringContaining('2048') as unknown,
    });
    await expect(read(new ByteReader(chunks(bytes.subarray(0, 1500), 512)))).rejects.toMatchObject({
      code: 'TAR_INVALID',
    });
  });
});
