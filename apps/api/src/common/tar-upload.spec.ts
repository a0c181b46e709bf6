import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { StratumError } from '@stratum/contracts';
import { encodeHeader, END_OF_ARCHIVE, padding, type EncodableHeader } from '@stratum/tar';
import { inspectContext } from './tar-upload';

type Spec = Partial<EncodableHeader> & { path: string; content?: string };

function tar(specs: Spec[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of specs) {
    const type = s.type ?? 'file';
    const body = Buffer.from(s.content ?? '');
    parts.push(
      encodeHeader({
        mode: 0o644,
        mtime: 0,
        linkpath: '',
        ...s,
        type,
        size: type === 'file' ? body.length : 0,
      }),
    );
    if (type === 'file') {
      parts.push(body, Buffer.alloc(padding(body.length)));
    }
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** Runs an upload through inspectContext in small chunks; returns what was stored and the summary. */
async function upload(
  body: Buffer,
  limit = 1024 * 1024,
  options: Parameters<typeof inspectContext>[2] = {},
): Promise<{ stored: Buffer; paths: string[] } | { error: StratumError }> {
  const chunks = Array.from({ length: Math.ceil(body.length / 700) }, (_, i) =>
    body.subarray(i * 700, (i + 1) * 700),
  );
  const { bytes, summary } = inspectContext(Readable.from(chunks), limit, options);
  const stored: Buffer[] = [];
  const store = (async () => {
    for await (const c of bytes) {
      stored.push(c as Buffer);
    }
  })();
  const [s, st] = await Promise.allSettled([summary, store]);
  if (s.status === 'rejected') {
    expect(s.reason).toBeInstanceOf(StratumError);
    return { error: s.reason as StratumError };
  }
  expect(st.status).toBe('fulfilled');
  return { stored: Buffer.concat(stored), paths: [...s.value.paths].sort() };
}

const DF: Spec = { path: 'Dockerfile', content: 'FROM scratch\n' };

describe('inspectContext', () => {
  it('stores the bytes unchanged and lists cleaned paths; .wh.* names are ordinary files', async () => {
    const body = tar([
      DF,
      { path: './src/', type: 'dir' },
      { path: 'src/.wh.foo', content: 'x' },
      { path: '.wh..wh..opq', content: 'y' },
      { path: '/abs/file', content: 'z' },
      { path: 'ln', type: 'symlink', linkpath: '/' },
      { path: 'hard', type: 'link', linkpath: 'src/.wh.foo' },
    ]);
    for (const b of [body, gzipSync(body)]) {
      const r = await upload(b);
      expect(r).toEqual({
        stored: b,
        paths: ['.wh..wh..opq', 'Dockerfile', 'abs/file', 'hard', 'ln', 'src', 'src/.wh.foo'],
      });
    }
  });

  it.each<[string, Spec[], RegExp]>([
    ['.. traversal', [{ path: '../x', content: 'x' }], /climbs out.*"\.\.\/x"/],
    [
      'a symlink that leads out, then a file through it',
      [
        { path: 'up', type: 'symlink', linkpath: '../../..' },
        { path: 'up/tmp/x', content: 'x' },
      ],
      /outside the root.*"up\/tmp\/x"/,
    ],
    ['a hard link out', [{ path: 'o', type: 'link', linkpath: '../sentinel' }], /climbs out.*"o"/],
    [
      'a hard link to nothing',
      [{ path: 'pw', type: 'link', linkpath: '/etc/passwd' }],
      /does not exist.*"pw"/,
    ],
    [
      'a path through a file',
      [
        { path: 'f', content: 'f' },
        { path: 'f/x', content: 'x' },
      ],
      /not a directory/,
    ],
  ])('refuses %s: 400 CONTEXT_INVALID naming the entry', async (_name, specs, message) => {
    const r = await upload(tar([DF, ...specs]));
    expect(r).toMatchObject({ error: { code: 'CONTEXT_INVALID' } });
    expect((r as { error: Error }).error.message).toMatch(message);
    expect((r as { error: Error }).error.message).toMatch(
      /^build context holds an entry that cannot be extracted/,
    );
  });

  it('refuses a device node with its own message', async () => {
    const r = await upload(tar([DF, { path: 'dev/sda', type: 'block', devmajor: 8 }]));
    expect(r).toMatchObject({ error: { code: 'CONTEXT_INVALID' } });
    expect((r as { error: Error }).error.message).toContain('device node (dev/sda)');
  });

  it('applies the limit to the uncompressed tar too (a gzip bomb is CONTEXT_TOO_LARGE)', async () => {
    const big = tar([DF, { path: 'big', content: '0'.repeat(300_000) }]);
    const gz = gzipSync(big);
    expect(gz.length).toBeLessThan(100_000);
    const r = await upload(gz, 100_000);
    expect(r).toMatchObject({ error: { code: 'CONTEXT_TOO_LARGE' } });
    expect((r as { error: Error }).error.message).toContain('100000');
    expect(await upload(big, 100_000)).toMatchObject({ error: { code: 'CONTEXT_TOO_LARGE' } });
  });

  it('answers an empty body, a body that is no tar, a truncated tar and a corrupt gzip clearly', async () => {
    expect(await upload(Buffer.alloc(0))).toMatchObject({ error: { code: 'CONTEXT_MISSING' } });
    const notTar = await upload(Buffer.from('not a tar at all\n'.repeat(64)));
    expect(notTar).toMatchObject({ error: { code: 'CONTEXT_INVALID' } });
    expect((notTar as { error: Error }).error.message).toMatch(/not a valid tar archive: .*tar header/);
    const truncated = await upload(tar([DF, { path: 'f', content: 'y'.repeat(5000) }]).subarray(0, 1500));
    expect((truncated as { error: Error }).error.message).toMatch(/unexpected end of tar stream/);
    const gz = gzipSync(tar([DF]));
    gz[gz.length - 8] ^= 0xff;
    const corrupt = await upload(gz);
    expect(corrupt).toMatchObject({ error: { code: 'CONTEXT_INVALID' } });
    expect((corrupt as { error: Error }).error.message).toMatch(/gzip/);
    expect(await upload(END_OF_ARCHIVE)).toMatchObject({ error: { code: 'CONTEXT_INVALID' } });
  });
});

describe('inspectContext entry limit (MAX_CONTEXT_ENTRIES)', () => {
  const many = (n: number): Spec[] => [DF, ...Array.from({ length: n - 1 }, (_, i) => ({ path: `f/${i}` }))];

  it('accepts a context of exactly maxEntries entries, listing only the paths asked for', async () => {
    const out = await upload(tar(many(1000)), 4 * 1024 * 1024, {
      maxEntries: 1000,
      keepPath: (p) => p === 'Dockerfile',
    });
    expect(out).toEqual({ stored: expect.any(Buffer), paths: ['Dockerfile'] });
  });

  it('refuses one more with 413 CONTEXT_TOO_LARGE naming the limit', async () => {
    const out = await upload(tar(many(1001)), 4 * 1024 * 1024, { maxEntries: 1000 });
    expect(out).toEqual({ error: expect.any(StratumError) });
    const err = (out as { error: StratumError }).error;
    expect(err.code).toBe('CONTEXT_TOO_LARGE');
    expect(err.message).toBe('build context holds more than 1000 entries (the limit MAX_CONTEXT_ENTRIES)');
  });
});
