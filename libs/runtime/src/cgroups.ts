import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** Where the memory controller lives on this host, as runc (cgroupfs driver) sees it. */
export type MemoryCgroupLayout = { version: 2; root: string } | { version: 1; memoryMount: string } | null;

/**
 * Reads /proc/self/mountinfo: cgroup v2 when /sys/fs/cgroup itself is cgroup2 (runc's
 * "unified mode"), otherwise the v1 hierarchy that has the memory controller. A hybrid host
 * (v1 controllers plus /sys/fs/cgroup/unified) counts as v1, as it does for runc.
 * https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html
 */
export async function detectMemoryCgroup(mountinfo?: string): Promise<MemoryCgroupLayout> {
  const text = mountinfo ?? (await fs.readFile('/proc/self/mountinfo', 'utf8'));
  let v1: string | null = null;
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep === -1) {
      continue;
    }
    const mountPoint = line.slice(0, sep).split(' ')[4];
    const [fsType, , superOptions = ''] = line.slice(sep + 3).split(' ');
    if (mountPoint === '/sys/fs/cgroup' && fsType === 'cgroup2') {
      return { version: 2, root: mountPoint };
    }
    if (fsType === 'cgroup' && mountPoint && superOptions.split(',').includes('memory')) {
      v1 = mountPoint;
    }
  }
  return v1 ? { version: 1, memoryMount: v1 } : null;
}

/**
 * How many processes the kernel's OOM killer killed in the cgroup at `cgroupsPath` (an
 * absolute runc cgroupsPath): `oom_kill` in memory.events (v2) or memory.oom_control (v1,
 * kernel >= 4.13). Null when it cannot be read.
 * https://docs.kernel.org/admin-guide/cgroup-v2.html#memory-interface-files
 */
export async function readOomKillCount(
  layout: MemoryCgroupLayout,
  cgroupsPath: string,
): Promise<number | null> {
  if (layout === null) {
    return null;
  }
  const file =
    layout.version === 2
      ? path.join(layout.root, cgroupsPath, 'memory.events')
      : path.join(layout.memoryMount, cgroupsPath, 'memory.oom_control');
  try {
    const text = await fs.readFile(file, 'utf8');
    const match = /^oom_kill (\d+)$/m.exec(text);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/**
 * The cgroup2 mounts crun must not see on this host: on a hybrid host (v1 controllers at
 * /sys/fs/cgroup, cgroup2 beside them, as /sys/fs/cgroup/unified) whose cgroup2 holds a
 * controller, crun refuses to run ("cgroups in hybrid mode not supported, drop all controllers
 * from cgroupv2"); runc uses the v1 hierarchies and ignores it. Empty on a v2 or plain v1 host
 * and when the cgroup2 mount holds no controller.
 */
export async function hybridCgroup2Mounts(mountinfo?: string): Promise<string[]> {
  const text = mountinfo ?? (await fs.readFile('/proc/self/mountinfo', 'utf8'));
  const v2: string[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep === -1) {
      continue;
    }
    const mountPoint = line.slice(0, sep).split(' ')[4];
    const [fsType] = line.slice(sep + 3).split(' ');
    if (fsType !== 'cgroup2' || mountPoint === undefined) {
      continue;
    }
    if (mountPoint === '/sys/fs/cgroup') {
      return []; // unified: nothing to hide
    }
    if (mountPoint.startsWith('/sys/fs/cgroup/')) {
      v2.push(mountPoint);
    }
  }
  const busy: string[] = [];
  for (const mountPoint of v2) {
    const controllers = await fs
      .readFile(path.join(mountPoint, 'cgroup.controllers'), 'utf8')
      .catch(() => '');
    if (controllers.trim() !== '') {
      busy.push(mountPoint);
    }
  }
  return busy;
}
