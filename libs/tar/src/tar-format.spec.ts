import { decodeHeader, encodeHeader, parsePax, type TarHeader } from './tar-format';
import { cleanEntryPath } from './archive-rules';
import { TarError } from './tar-error';

const header = (over: Partial<TarHeader>): TarHeader => ({
  path: 'a',
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size: 0,
  mtime: 1_700_000_000,
  linkpath: '',
  devmajor: 0,
  devminor: 0,
  xattrs: new Map(),
  ...over,
});

describe('tar header codec', () => {
  it('round-trips a plain ustar header', () => {
    const buf = encodeHeader(
      header({ path: 'dir/file', mode: 0o4755, uid: 1000, gid: 1001, size: 12345, type: 'file' }),
    );
    expect(buf).toHaveLength(512);
    expect(decodeHeader(buf)).toMatchObject({
      name: 'dir/file',
      mode: 0o4755,
      uid: 1000,
      gid: 1001,
      size: 12345,
      typeflag: '0',
    });
  });

  it('splits long paths into ustar prefix/name, and uses pax beyond that', () => {
    const mid = `${'p'.repeat(120)}/${'n'.repeat(90)}`;
    const buf = encodeHeader(header({ path: mid }));
    expect(buf).toHaveLength(512);
    expect(decodeHeader(buf).name).toBe(mid);
    const long = `${'x'.repeat(300)}/${'y'.repeat(150)}`;
    const withPax = encodeHeader(header({ path: long, linkpath: 'l'.repeat(200), type: 'symlink' }));
    expect(decodeHeader(withPax).typeflag).toBe('x');
    const size = decodeHeader(withPax).size;
    const pax = parsePax(withPax.subarray(512, 512 + size));
    expect(pax.get('path')?.toString()).toBe(long);
    expect(pax.get('linkpath')?.toString()).toBe('l'.repeat(200));
  });

  it('stores binary xattrs as SCHILY.xattr pax records, sorted', () => {
    const value = Buffer.from([0, 10, 255, 61]); // NUL, newline, 0xff, '='
    const buf = encodeHeader(
      header({
        xattrs: new Map([
          ['user.z', Buffer.from('z')],
          ['security.capability', value],
        ]),
      }),
    );
    const pax = parsePax(buf.subarray(512, 512 + decodeHeader(buf).size));
    expect([...pax.keys()]).toEqual(['SCHILY.xattr.security.capability', 'SCHILY.xattr.user.z']);
    expect(pax.get('SCHILY.xattr.security.capability')).toEqual(value);
  });

  it('is deterministic and rejects a corrupt checksum', () => {
    const a = encodeHeader(header({ path: 'é/ü', size: 3 }));
    expect(encodeHeader(header({ path: 'é/ü', size: 3 }))).toEqual(a);
    const bad = Buffer.from(a.subarray(a.length - 512));
    bad[0] ^= 1;
    expect(() => decodeHeader(bad)).toThrow(TarError);
  });

  it('reads GNU base-256 numbers', () => {
    const buf = encodeHeader(header({ size: 0 }));
    buf.fill(0, 124, 136);
    buf[124] = 0x80;
    buf.writeUIntBE(9_000_000_000, 130, 6);
    buf.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of buf) {
      sum += b;
    }
    buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
    expect(decodeHeader(buf).size).toBe(9_000_000_000);
  });
});

describe('cleanEntryPath', () => {
  it('treats absolute names as root-relative and drops . components', () => {
    expect(cleanEntryPath('/etc//./passwd')).toEqual(['etc', 'passwd']);
    expect(cleanEntryPath('./')).toEqual([]);
    expect(cleanEntryPath('a/b/../c')).toEqual(['a', 'c']);
  });

  it('refuses .. that climbs out of the root, naming the entry', () => {
    for (const p of ['..', '../x', 'a/../../x', '/../etc/passwd']) {
      let caught: unknown;
      try {
        cleanEntryPath(p);
      } catch (e) {
        caught = e;
      }
      expect(caught).toMatchObject({ code: 'TAR_PATH_ESCAPE', entry: p });
    }
  });
});
