// The gzip implementations a worker may use: each is deterministic, each decodes back to the
// same tar, and the same tar always gets the same diffID whichever compressed it.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { compressLayer, type CompressionOptions, SMALL_LAYER_BYTES } from './layer-compression';

// Half text, half random: both paths of a compressor (matches found / stored blocks).
const text = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `${i}\n`).join(''));
const input = Buffer.concat([text, randomBytes(1 << 20)]);

async function compress(
  options: CompressionOptions,
): Promise<{ bytes: Buffer; digest: string; diffId: string }> {
  const layer = compressLayer(Readable.from([input]), options);
  const [bytes, digests] = await Promise.all([buffer(layer.stream), layer.done]);
  return { bytes, digest: digests.digest, diffId: digests.diffId };
}

describe.each<CompressionOptions['gzipImplementation']>(['igzip', 'pigz', 'zlib', 'auto'])(
  'gzip via %s',
  (gzipImplementation) => {
    it('is deterministic and decodes back to the input', async () => {
      const a = await compress({ gzipImplementation });
      const b = await compress({ gzipImplementation });
      expect(a.digest).toBe(b.digest);
      expect(a.bytes.equals(b.bytes)).toBe(true);
      expect(gunzipSync(a.bytes).equals(input)).toBe(true);
      expect(a.bytes.length).toBeLessThan(input.length); // the text half compresses
      // header: gzip magic, no mtime (bytes 4-7 zero), so output depends on the input only
      expect(a.bytes.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      expect(a.bytes.readUInt32LE(4)).toBe(0);
    });
  },
);

it('gives the same diffID whichever implementation compressed the tar', async () => {
  const results = await Promise.all(
    (['igzip', 'pigz', 'zlib'] as const).map((gzipImplementation) => compress({ gzipImplementation })),
  );
  expect(new Set(results.map((r) => r.diffId)).size).toBe(1);
  expect(new Set(results.map((r) => r.digest)).size).toBe(3);
});

describe('auto: small layers in-process', () => {
  const run = async (tar: Buffer, chunk = 16 * 1024): Promise<{ bytes: Buffer; diffId: string }> => {
    const chunks: Buffer[] = [];
    for (let i = 0; i < tar.length; i += chunk) {
      chunks.push(tar.subarray(i, i + chunk));
    }
    const layer = compressLayer(Readable.from(chunks), {});
    const [bytes, digests] = await Promise.all([buffer(layer.stream), layer.done]);
    return { bytes, diffId: digests.diffId };
  };

  it('a tar of at most SMALL_LAYER_BYTES is gzipped by zlib -6, arriving in many chunks', async () => {
    const small = Buffer.concat([text.subarray(0, 100_000), randomBytes(SMALL_LAYER_BYTES - 100_000)]);
    const a = await run(small);
    expect(a.bytes.equals(gzipSync(small, { level: 6 }))).toBe(true);
    expect(a.diffId).toBe(`sha256:${createHash('sha256').update(small).digest('hex')}`);
    expect((await run(small, 1000)).bytes.equals(a.bytes)).toBe(true);
  });

  it('a larger tar goes to igzip as before, every byte of it (peeked chunks first)', async () => {
    const large = Buffer.concat([text, randomBytes(SMALL_LAYER_BYTES)]);
    const a = await run(large);
    const viaIgzip = compressLayer(Readable.from([large]), { gzipImplementation: 'igzip' });
    const [expected] = await Promise.all([buffer(viaIgzip.stream), viaIgzip.done]);
    expect(a.bytes.equals(expected)).toBe(true);
    expect(gunzipSync(a.bytes).equals(large)).toBe(true);
  });

  it('an error of the source fails the layer', async () => {
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(1024);
        throw new Error('disk gone');
      })(),
    );
    const layer = compressLayer(failing, {});
    const streamError = new Promise((resolve) => layer.stream.on('error', resolve));
    layer.stream.resume();
    await expect(layer.done).rejects.toThrow('disk gone');
    expect(String(await streamError)).toMatch(/disk gone/);
  });

  it('a source that fails before anyone reads the layer fails the late reader too, never the process', async () => {
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(10);
        throw new Error('unreadable entry');
      })(),
    );
    const layer = compressLayer(failing, {});
    await expect(layer.done).rejects.toThrow('unreadable entry');
    // a blob store that attaches only now (after making its temp file) still gets the error
    await expect(pipeline(layer.stream, new Writable({ write: (_c, _e, cb) => cb() }))).rejects.toThrow(
      'unreadable entry',
    );
  });
});

describe('niceness', () => {
  it('a compressor process runs at the niceness asked for, and its bytes are the same', async () => {
    const seen: number[] = [];
    // poll our igzip children's nice value (field 19 of /proc/<pid>/stat) while one runs
    const poll = setInterval(() => {
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
          const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          if (comm === 'igzip' && Number(fields[1]) === process.pid) {
            seen.push(Number(fields[16]));
          }
        } catch {
          // exited meanwhile
        }
      }
    }, 2);
    // slow the reader down so the process lives long enough to be seen
    const layer = compressLayer(Readable.from([input, input, input]), {
      gzipImplementation: 'igzip',
      niceness: 10,
    });
    const chunks: Buffer[] = [];
    await pipeline(
      layer.stream,
      new Writable({
        write(chunk: Buffer, _enc, done) {
          chunks.push(chunk);
          setTimeout(done, 5);
        },
      }),
    );
    const niced = await layer.done;
    clearInterval(poll);
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen)).toEqual(new Set([10]));
    const plain = compressLayer(Readable.from([input, input, input]), { gzipImplementation: 'igzip' });
    const [, digests] = await Promise.all([buffer(plain.stream), plain.done]);
    expect(niced.digest).toBe(digests.digest);
  });
});
