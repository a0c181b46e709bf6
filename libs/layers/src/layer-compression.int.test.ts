// The gzip implementations a worker may use: each is deterministic, each decodes back to the
// same tar, and the same tar always gets the same diffID whichever compressed it.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { compressLayer, type CompressionOptions } from './layer-compression';

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
