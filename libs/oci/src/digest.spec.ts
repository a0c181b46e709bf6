import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestStream, isDigest, isSha256Digest, parseDigest, sha256Digest } from './digest';
import { OciError } from './oci-error';

const EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('digests', () => {
  it('hashes bytes and strings with sha256', () => {
    expect(sha256Digest(Buffer.alloc(0))).toBe(EMPTY);
    expect(sha256Digest('abc')).toBe(
      'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    expect(sha256Digest(new Uint8Array([97, 98, 99]))).toBe(sha256Digest('abc'));
  });

  it('parses sha256 and sha512 digests', () => {
    expect(parseDigest(EMPTY)).toEqual({ algorithm: 'sha256', encoded: EMPTY.slice(7), digest: EMPTY });
    const s512 = `sha512:${'a'.repeat(128)}`;
    expect(parseDigest(s512).algorithm).toBe('sha512');
  });

  it.each([
    '',
    'sha256',
    'sha256:',
    `sha256:${'a'.repeat(63)}`,
    `sha256:${'a'.repeat(65)}`,
    `sha256:${'A'.repeat(64)}`,
    `sha512:${'a'.repeat(64)}`,
    `md5:${'a'.repeat(32)}`,
    `SHA256:${'a'.repeat(64)}`,
    ` sha256:${'a'.repeat(64)}`,
    `sha256:${'g'.repeat(64)}`,
  ])('rejects %j', (d) => {
    expect(() => parseDigest(d)).toThrow(OciError);
    expect(isDigest(d)).toBe(false);
  });

  it('type-guards', () => {
    expect(isDigest(EMPTY)).toBe(true);
    expect(isDigest(42)).toBe(false);
    expect(isSha256Digest(EMPTY)).toBe(true);
    expect(isSha256Digest(`sha512:${'a'.repeat(128)}`)).toBe(false);
  });
});

describe('DigestStream', () => {
  it('passes bytes through unchanged and reports digest and size', async () => {
    const parts = [Buffer.from('hello '), Buffer.from('layer '), Buffer.from('world')];
    const received: Buffer[] = [];
    const hasher = new DigestStream();
    await pipeline(
      Readable.from(parts),
      hasher,
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          received.push(chunk);
          cb();
        },
      }),
    );
    const all = Buffer.concat(parts);
    expect(Buffer.concat(received).equals(all)).toBe(true);
    const expected = { digest: `sha256:${createHash('sha256').update(all).digest('hex')}`, size: all.length };
    expect(hasher.result()).toEqual(expected);
    await expect(hasher.done).resolves.toEqual(expected);
    expect(hasher.size).toBe(all.length);
  });

  it('refuses result() before the end and rejects done on error', async () => {
    const hasher = new DigestStream();
    expect(() => hasher.result()).toThrow(/before the stream ended/);
    const failing = new Readable({
      read() {
        this.destroy(new Error('boom'));
      },
    });
    await expect(pipeline(failing, hasher)).rejects.toThrow('boom');
    await expect(hasher.done).rejects.toThrow();
  });

  it('handles the empty stream', async () => {
    const hasher = new DigestStream();
    hasher.resume();
    hasher.end();
    await expect(hasher.done).resolves.toEqual({ digest: EMPTY, size: 0 });
  });
});
