import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseGroup, parsePasswd, resolveUser } from './user';

describe('parsePasswd / parseGroup', () => {
  it('parses entries and skips comments and malformed lines', () => {
    const passwd = parsePasswd(
      [
        '# comment',
        'root:x:0:0:root:/root:/bin/sh',
        '',
        'bad:x:abc:0::/:',
        'short:x:1',
        'app:x:1000:1000::/home/app:',
      ].join('\n'),
    );
    expect(passwd).toEqual([
      { name: 'root', uid: 0, gid: 0, home: '/root' },
      { name: 'app', uid: 1000, gid: 1000, home: '/home/app' },
    ]);
    expect(parseGroup('wheel:x:10:app,root\nempty:x:11:\nbroken:x:-1:\n')).toEqual([
      { name: 'wheel', gid: 10, members: ['app', 'root'] },
      { name: 'empty', gid: 11, members: [] },
    ]);
    expect(parsePasswd(null)).toEqual([]);
  });

  it('rejects ids beyond uid_t', () => {
    expect(parsePasswd('big:x:4294967295:0::/:\n')).toEqual([]);
  });
});

describe('resolveUser', () => {
  let root: string;
  let outside: string;

  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'stratum-user-'));
    outside = mkdtempSync(path.join(os.tmpdir(), 'stratum-host-'));
    mkdirSync(path.join(root, 'etc'));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  function writeDb(passwd: string, group: string): void {
    writeFileSync(path.join(root, 'etc/passwd'), passwd);
    writeFileSync(path.join(root, 'etc/group'), group);
  }

  it('resolves a name to its uid, gid, home and supplementary groups', async () => {
    writeDb(
      'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n',
      'root:x:0:\napp:x:1000:\nwheel:x:10:root,app\naudio:x:29:app\n',
    );
    await expect(resolveUser(root, 'app')).resolves.toEqual({
      uid: 1000,
      gid: 1000,
      additionalGids: [10, 29],
      home: '/home/app',
      name: 'app',
    });
  });

  it('defaults to root', async () => {
    writeDb('root:x:0:0:root:/root:/bin/sh\n', 'root:x:0:\nwheel:x:10:root\n');
    await expect(resolveUser(root, undefined)).resolves.toMatchObject({
      uid: 0,
      gid: 0,
      home: '/root',
      additionalGids: [10],
    });
    await expect(resolveUser(root, '')).resolves.toMatchObject({ uid: 0, gid: 0 });
  });

  it('an explicit group wins and drops supplementary groups (Docker semantics)', async () => {
    writeDb('app:x:1000:1000::/home/app:\n', 'app:x:1000:\nwheel:x:10:app\nstaff:x:50:\n');
    await expect(resolveUser(root, 'app:staff')).resolves.toMatchObject({
      uid: 1000,
      gid: 50,
      additionalGids: [],
    });
    await expect(resolveUser(root, 'app:7')).resolves.toMatchObject({
      uid: 1000,
      gid: 7,
      additionalGids: [],
    });
    await expect(resolveUser(root, '1000:staff')).resolves.toMatchObject({ uid: 1000, gid: 50 });
  });

  it('numeric ids work without any passwd or group file', async () => {
    await expect(resolveUser(root, '65534:65534')).resolves.toEqual({
      uid: 65534,
      gid: 65534,
      additionalGids: [],
      home: '/',
    });
    await expect(resolveUser(root, '4242')).resolves.toEqual({
      uid: 4242,
      gid: 0,
      additionalGids: [],
      home: '/',
    });
  });

  it('a numeric uid with a passwd entry takes its gid and home', async () => {
    writeDb('nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', 'nogroup:x:65534:\n');
    await expect(resolveUser(root, '65534')).resolves.toMatchObject({
      uid: 65534,
      gid: 65534,
      name: 'nobody',
    });
  });

  it('unknown names are typed errors', async () => {
    writeDb('root:x:0:0::/root:\n', 'root:x:0:\n');
    await expect(resolveUser(root, 'ghost')).rejects.toMatchObject({
      reason: 'USER_UNKNOWN',
      code: 'BAD_REQUEST',
    });
    await expect(resolveUser(root, 'root:ghosts')).rejects.toMatchObject({ reason: 'GROUP_UNKNOWN' });
    await expect(resolveUser(root, ':0')).rejects.toMatchObject({ reason: 'OPTIONS_INVALID' });
    await expect(resolveUser(root, 'root:')).rejects.toMatchObject({ reason: 'OPTIONS_INVALID' });
  });

  it('does not follow an absolute /etc/passwd symlink out of the rootfs', async () => {
    // a hostile image: /etc/passwd -> /host/etc/passwd; the host file must never be read
    mkdirSync(path.join(outside, 'etc'), { recursive: true });
    writeFileSync(path.join(outside, 'etc/passwd'), 'evil:x:0:0::/:\n');
    symlinkSync(path.join(outside, 'etc/passwd'), path.join(root, 'etc/passwd'));
    await expect(resolveUser(root, 'evil')).rejects.toMatchObject({ reason: 'USER_UNKNOWN' });
    // ...but the same absolute target *inside* the rootfs is what the container would see
    mkdirSync(path.join(root, outside, 'etc'), { recursive: true });
    writeFileSync(path.join(root, outside, 'etc/passwd'), 'inside:x:7:7::/:\n');
    await expect(resolveUser(root, 'inside')).resolves.toMatchObject({ uid: 7 });
  });

  it('does not follow a relative symlink or a symlinked /etc out of the rootfs', async () => {
    writeFileSync(path.join(outside, 'passwd'), 'evil:x:0:0::/:\n');
    symlinkSync('../../../../../../../../' + outside.slice(1) + '/passwd', path.join(root, 'etc/passwd'));
    await expect(resolveUser(root, 'evil')).rejects.toMatchObject({ reason: 'USER_UNKNOWN' });
    rmSync(path.join(root, 'etc'), { recursive: true });
    symlinkSync(outside, path.join(root, 'etc'));
    await expect(resolveUser(root, 'evil')).rejects.toMatchObject({ reason: 'USER_UNKNOWN' });
  });

  it('follows symlinks that stay inside the rootfs, and survives loops', async () => {
    mkdirSync(path.join(root, 'usr/share'), { recursive: true });
    writeFileSync(path.join(root, 'usr/share/passwd'), 'app:x:1000:1000::/:\n');
    symlinkSync('../usr/share/passwd', path.join(root, 'etc/passwd'));
    await expect(resolveUser(root, 'app')).resolves.toMatchObject({ uid: 1000 });
    rmSync(path.join(root, 'etc/passwd'));
    symlinkSync('/etc/passwd', path.join(root, 'etc/passwd'));
    await expect(resolveUser(root, 'app')).rejects.toMatchObject({ reason: 'USER_UNKNOWN' });
    await expect(resolveUser(root, '12')).resolves.toMatchObject({ uid: 12, gid: 0 });
  });

  it('ignores a passwd that is not a regular file', async () => {
    mkdirSync(path.join(root, 'etc/passwd'));
    await expect(resolveUser(root, '5')).resolves.toMatchObject({ uid: 5, gid: 0 });
  });
});
