import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { requireTools } from './tools';

/** Kept between test runs: made once per machine. */
const CACHE_DIR = '/var/tmp/stratum-test-cache';
const REPO = resolve(__dirname, '../..');

/**
 * Registers the qemu aarch64 handler with the F flag (infra/setup-binfmt.sh: installs
 * qemu-user-static, mounts binfmt_misc when needed; a no-op when it is registered already), so
 * this host runs linux/arm64 RUN steps. The handler is host-wide, under its standard name.
 */
export function ensureArm64Emulation(): void {
  const handler = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
  const ok = (): boolean =>
    existsSync(handler) &&
    /^enabled/.test(readFileSync(handler, 'utf8')) &&
    /^flags: .*F/m.test(readFileSync(handler, 'utf8'));
  if (!ok()) {
    execFileSync(join(REPO, 'infra/setup-binfmt.sh'), ['aarch64'], { stdio: 'ignore', timeout: 10 * 60_000 });
  }
  if (!ok()) {
    throw new Error(`${handler} is not registered with the F flag after infra/setup-binfmt.sh`);
  }
}

/**
 * A busybox root filesystem for linux/arm64 as an uncompressed tar, from Debian's arm64
 * busybox-static package (`dpkg --add-architecture arm64`, `apt-get download
 * busybox-static:arm64`, `dpkg-deb -x`), laid out as the amd64 fixture (applet links, passwd,
 * group, fixed owners and times). Made once per machine under /var/tmp.
 */
export function busyboxArm64Rootfs(): Buffer {
  const cached = join(CACHE_DIR, 'busybox-arm64-rootfs.tar');
  if (existsSync(cached)) {
    return readFileSync(cached);
  }
  requireTools('dpkg', 'dpkg-deb', 'apt-get', 'tar', '/bin/busybox');
  mkdirSync(CACHE_DIR, { recursive: true });
  const work = mkdtempSync(join(CACHE_DIR, 'busybox-arm64-'));
  const tmp = `${cached}.${process.pid}.tmp`;
  try {
    const foreign = execFileSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' });
    const download = (): void => {
      execFileSync('apt-get', ['download', '-q', 'busybox-static:arm64'], {
        cwd: work,
        stdio: 'ignore',
        timeout: 5 * 60_000,
      });
    };
    if (!foreign.split('\n').includes('arm64')) {
      execFileSync('dpkg', ['--add-architecture', 'arm64']);
      execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore', timeout: 10 * 60_000 });
      download();
    } else {
      try {
        download();
      } catch {
        execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore', timeout: 10 * 60_000 });
        download();
      }
    }
    const deb = readdirSync(work).find((n) => n.endsWith('.deb'));
    if (deb === undefined) {
      throw new Error('apt-get download busybox-static:arm64 gave no .deb');
    }
    const x = join(work, 'x');
    execFileSync('dpkg-deb', ['-x', join(work, deb), x]);
    const root = join(work, 'root');
    for (const d of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev']) {
      mkdirSync(join(root, d), { recursive: true });
    }
    chmodSync(join(root, 'tmp'), 0o1777);
    execFileSync('cp', [join(x, 'bin/busybox'), join(root, 'bin/busybox')]);
    // The applet list of the same Debian version, read from the host's (amd64) busybox.
    const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
      .split('\n')
      .filter((a) => a !== '' && a !== 'busybox');
    for (const a of applets) {
      symlinkSync('busybox', join(root, 'bin', a));
    }
    writeFileSync(
      join(root, 'etc/passwd'),
      'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
    );
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    execFileSync('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=2024-01-01 00:00:00Z',
      '-C',
      root,
      '-cf',
      tmp,
      '.',
    ]);
    renameSync(tmp, cached);
  } finally {
    rmSync(tmp, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
  return readFileSync(cached);
}
