import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTools } from './tools';

/**
 * A tar of this host's OpenSSH client tools (ssh-add, ssh-keygen) with every shared library
 * they load (from ldd, links followed) and an /etc/passwd naming root, to ADD on top of a
 * busybox root: a step can then talk to an ssh agent without a package manager or a network.
 */
export function sshToolsTar(): Buffer {
  requireTools('ssh-add', 'ssh-keygen', 'ldd', 'tar');
  const bins = ['/usr/bin/ssh-add', '/usr/bin/ssh-keygen'].map((b) =>
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', b.slice(b.lastIndexOf('/') + 1)], {
      encoding: 'utf8',
    }).trim(),
  );
  const libs = new Set<string>();
  for (const b of bins) {
    for (const m of execFileSync('ldd', [b], { encoding: 'utf8' }).matchAll(/(\/\S+\.so[.\d]*)/g)) {
      libs.add(m[1]);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'stratum-ssh-tools-'));
  try {
    writeFileSync(join(dir, 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    const rel = [...bins, ...libs].map((p) => p.slice(1));
    return execFileSync(
      'tar',
      [
        '-ch',
        '--owner=0',
        '--group=0',
        '-C',
        '/',
        ...rel,
        '--transform',
        's,^passwd$,etc/passwd,',
        '-C',
        dir,
        'passwd',
      ],
      { maxBuffer: 256 * 1024 * 1024 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
