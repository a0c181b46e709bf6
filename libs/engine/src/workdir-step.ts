import { chmod, lchown, lstat, mkdir } from 'node:fs/promises';
import { posix } from 'node:path';
import { containerPath, resolveInRoot } from '@stratum/confine';
import { WorkdirInstruction } from '@stratum/dockerfile';
import { LayerDescriptor } from '@stratum/images';
import { resolveUser } from '@stratum/runtime';
import { BuildError } from './build-errors';
import { ImageState } from './image-state';
import { StepHost, stateWorkdir } from './step-host';

/**
 * WORKDIR creates its directory like BuildKit (mkdir -p, 0755, owned by the current USER):
 * a layer only when it did not exist yet.
 */
export async function workdirStep(
  host: StepHost,
  state: ImageState,
  instr: WorkdirInstruction,
): Promise<LayerDescriptor | null> {
  const cfg = state.config.config ?? {};
  const dir = stateWorkdir(state);
  if (dir === '/') {
    return null;
  }
  // Most WORKDIRs name a directory the image has: seen in its layer dirs, no overlay mount.
  if ((await host.filesystems.isDirectory(state.layers, dir)) === true) {
    return null;
  }
  return host.withContainer(state, async (fs) => {
    const resolved = await resolveInRoot(fs.merged, dir);
    const st = await lstat(containerPath(fs.merged, resolved)).catch(() => null);
    if (st?.isDirectory() === true) {
      return false;
    }
    let owner: { uid: number; gid: number } | null = null;
    if (cfg.User !== undefined && cfg.User !== '') {
      try {
        const u = await resolveUser(fs.merged, cfg.User);
        owner = { uid: u.uid, gid: u.gid };
      } catch (err) {
        throw new BuildError(`WORKDIR ${dir}: user ${cfg.User}: ${(err as Error).message}`, instr.startLine);
      }
    }
    let cur = '/';
    for (const part of resolved.split('/').filter(Boolean)) {
      cur = posix.join(cur, part);
      const host = containerPath(fs.merged, cur);
      const pst = await lstat(host).catch(() => null);
      if (pst === null) {
        await mkdir(host);
        await chmod(host, 0o755);
        if (owner !== null) {
          await lchown(host, owner.uid, owner.gid);
        }
      } else if (!pst.isDirectory()) {
        throw new BuildError(`WORKDIR ${dir}: ${cur} is not a directory`, instr.startLine);
      }
    }
    return true;
  });
}
