import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatPlatform, nodeArchPlatform, parsePlatformList } from '@stratum/oci';

// Which platforms a host can run RUN steps for: its own, plus every foreign architecture the
// kernel hands to an emulator through binfmt_misc. Only handlers registered with the F
// ("fix binary") flag count: the kernel opens their interpreter at registration, so it works
// inside a container's rootfs that has no /usr/bin/qemu-* of its own (runc's rootfs never does).
// https://docs.kernel.org/admin-guide/binfmt-misc.html

/** Where the kernel's binfmt_misc file system is mounted. */
export const BINFMT_MISC_DIR = '/proc/sys/fs/binfmt_misc';

/** qemu-user interpreter name (after `qemu-`, before `-static`) -> platform it runs. */
const QEMU_PLATFORMS: Readonly<Record<string, string>> = {
  x86_64: 'linux/amd64',
  aarch64: 'linux/arm64',
  arm: 'linux/arm/v7',
  i386: 'linux/386',
  ppc64le: 'linux/ppc64le',
  s390x: 'linux/s390x',
  riscv64: 'linux/riscv64',
  mips64el: 'linux/mips64le',
  loongarch64: 'linux/loong64',
};

/** One binfmt_misc handler as its file under {@link BINFMT_MISC_DIR} describes it. */
export interface BinfmtHandler {
  readonly name: string;
  readonly enabled: boolean;
  readonly interpreter: string;
  readonly flags: string;
}

/** Parses a handler file (`enabled`, `interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P`, `flags: PF`...). */
export function parseBinfmtHandler(name: string, text: string): BinfmtHandler {
  const lines = text.split('\n').map((l) => l.trim());
  const value = (prefix: string): string =>
    (lines.find((l) => l.startsWith(prefix)) ?? '').slice(prefix.length).trim();
  return {
    name,
    enabled: lines[0] === 'enabled',
    interpreter: value('interpreter '),
    flags: value('flags:'),
  };
}

/** The platform a handler emulates, from its name or its interpreter's (`qemu-aarch64`, `aarch64-binfmt-P`). */
export function handlerPlatform(h: BinfmtHandler): string | null {
  const candidates = [h.name, h.interpreter.split('/').pop() ?? ''];
  for (const c of candidates) {
    const m = /^(?:qemu-)?([a-z0-9_]+?)(?:-static|-binfmt(?:-P)?)?$/.exec(c);
    if (m !== null && m[1] in QEMU_PLATFORMS) {
      return QEMU_PLATFORMS[m[1]];
    }
  }
  return null;
}

/** What a host can run, and why each foreign platform is there. */
export interface HostPlatforms {
  readonly native: string;
  /** Platform -> the binfmt handler that runs it. */
  readonly emulated: ReadonlyMap<string, string>;
  /** Handlers found that do not count (disabled, or without the F flag), with the reason. */
  readonly ignored: readonly string[];
}

/**
 * Reads the host's native platform and its usable binfmt_misc handlers. A missing or unmounted
 * binfmt_misc means native only.
 */
export async function detectHostPlatforms(
  arch: string = process.arch,
  binfmtDir: string = BINFMT_MISC_DIR,
): Promise<HostPlatforms> {
  const native = nodeArchPlatform(arch);
  if (native === null) {
    throw new Error(`this host's architecture "${arch}" is not one Stratum builds for`);
  }
  const nativeName = formatPlatform(native);
  const emulated = new Map<string, string>();
  const ignored: string[] = [];
  const status = await readFile(join(binfmtDir, 'status'), 'utf8').catch(() => null);
  if (status === null || status.trim() !== 'enabled') {
    return { native: nativeName, emulated, ignored };
  }
  for (const name of await readdir(binfmtDir)) {
    if (name === 'status' || name === 'register') {
      continue;
    }
    const text = await readFile(join(binfmtDir, name), 'utf8').catch(() => null);
    if (text === null) {
      continue;
    }
    const h = parseBinfmtHandler(name, text);
    const platform = handlerPlatform(h);
    if (platform === null || platform === nativeName) {
      continue;
    }
    if (!h.enabled) {
      ignored.push(`${name}: disabled`);
    } else if (!h.flags.includes('F')) {
      ignored.push(
        `${name}: registered without the F flag (its interpreter is not reachable from a container)`,
      );
    } else {
      emulated.set(platform, name);
    }
  }
  return { native: nativeName, emulated, ignored };
}

/**
 * The platforms a worker serves: every one the host runs, or those of `restrict`
 * (WORKER_PLATFORMS) when given, each of which must be runnable. Native first.
 */
export function servedPlatforms(host: HostPlatforms, restrict: string | null): string[] {
  const runnable = [host.native, ...host.emulated.keys()];
  if (restrict === null) {
    return runnable;
  }
  const wanted = parsePlatformList(restrict);
  const missing = wanted.filter((p) => !runnable.includes(p));
  if (missing.length > 0) {
    throw new Error(
      `WORKER_PLATFORMS names ${missing.join(', ')}, which this host cannot run (it runs ${runnable.join(', ')}${
        host.ignored.length > 0 ? `; ignored binfmt handlers: ${host.ignored.join('; ')}` : ''
      }); register a qemu handler with the F flag (infra/setup-binfmt.sh)`,
    );
  }
  return wanted;
}
