import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { create as createTar } from 'tar';
import { BUSYBOX_FIXTURE } from './shared';

const FIXTURE_SCRIPT = BUSYBOX_FIXTURE;

/** A busybox root filesystem tar, made once per machine by the shared fixture script. */
export function busyboxRootfs(): Buffer {
  const cached = join(tmpdir(), 'stratum-test-busybox-rootfs.tar');
  if (!existsSync(cached)) {
    const tmp = `${cached}.${process.pid}.tmp`;
    execFileSync(FIXTURE_SCRIPT, [tmp], { stdio: 'ignore' });
    renameSync(tmp, cached);
  }
  return readFileSync(cached);
}

/** Writes `files` (path -> content) into a new temp directory and returns it. */
export function writeTree(
  files: Record<string, string | Buffer>,
  dir = mkdtempSync(join(tmpdir(), 'stratum-ctx-')),
): string {
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), content);
  }
  return dir;
}

/**
 * A build context tar holding `files`, and `links` (path -> symlink target, stored as links:
 * hostile contexts point them at host paths).
 */
export async function contextTar(
  files: Record<string, string | Buffer>,
  links: Record<string, string> = {},
): Promise<Buffer> {
  const dir = writeTree(files);
  try {
    for (const [p, target] of Object.entries(links)) {
      mkdirSync(dirname(join(dir, p)), { recursive: true });
      symlinkSync(target, join(dir, p));
    }
    const chunks: Buffer[] = [];
    const stream = createTar({ cwd: dir, portable: true }, [...Object.keys(files), ...Object.keys(links)]);
    for await (const c of stream as AsyncIterable<Buffer>) {
      chunks.push(c);
    }
    return Buffer.concat(chunks);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The files of a busybox-based build: rootfs.tar plus the given Dockerfile lines. */
export function busyboxContext(
  dockerfileBody: string,
  extra: Record<string, string | Buffer> = {},
): Record<string, string | Buffer> {
  return {
    'rootfs.tar': busyboxRootfs(),
    Dockerfile: `FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\n${dockerfileBody}`,
    ...extra,
  };
}
