import { mkdir } from 'node:fs/promises';
import { Logger } from '@nestjs/common';
import { StratumConfig } from '@stratum/config';
import { IdMap, parseIdMap, probeIdmappedOverlay } from '@stratum/layers';
import { makeTraversable } from '@stratum/runtime';
import { WorkerPaths } from './host-sweeper';

/** The range `USERNS_REMAP=auto` uses (dockerd's usual first subordinate range). */
export const DEFAULT_USERNS_RANGE = '100000:65536';

/**
 * The user namespace RUN steps get on this worker, decided once at boot (USERNS_REMAP): `auto`
 * turns it on when the host mounts an overlay over idmapped layers (a probe in the scratch
 * dir), else logs why it is off; a range asked for by name on a host that cannot fails the
 * boot with the reason; `off` runs steps as the host's root.
 */
export class StepUserns {
  constructor(readonly map: IdMap | null) {}

  static async detect(config: StratumConfig, paths: WorkerPaths): Promise<StepUserns> {
    const logger = new Logger('StepUserns');
    const setting = config.usernsRemap;
    if (setting === 'off') {
      logger.warn('USERNS_REMAP=off: RUN steps run as root on this host');
      return new StepUserns(null);
    }
    const map = parseIdMap(setting === 'auto' ? DEFAULT_USERNS_RANGE : setting);
    await mkdir(paths.scratch, { recursive: true });
    const problem = await probeIdmappedOverlay(paths.scratch, map);
    if (problem !== null) {
      if (setting !== 'auto') {
        throw new Error(
          `USERNS_REMAP=${setting}: this host cannot run RUN steps in a user namespace (an overlay over idmapped layers, Linux >= 5.19, python3): ${problem}`,
        );
      }
      logger.warn(
        `USERNS_REMAP=auto: RUN steps run as root on this host, which cannot mount an overlay over idmapped layers: ${problem}`,
      );
      return new StepUserns(null);
    }
    // runc sets a step up from inside its namespace: the way to its root and mounts must let it pass
    for (const dir of [paths.jobs, paths.bundles]) {
      await mkdir(dir, { recursive: true });
      makeTraversable(dir);
    }
    logger.log(
      `RUN steps run in a user namespace: root in a step is uid ${map.uid}..${map.uid + map.count - 1} on the host`,
    );
    return new StepUserns(map);
  }
}
