import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { StratumError } from '@stratum/contracts';
import {
  ImagePuller,
  mirrorWriteConflict,
  PullEvent,
  PullPlan,
  RegistryError,
  RemoteRegistryError,
} from '@stratum/registry';
import { PullImageBody } from './pull.dto';

/** `POST /api/v1/images/pull`: checks the target name, then ImagePuller does the work. */
@Injectable()
export class PullService {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(ImagePuller) private readonly puller: ImagePuller,
  ) {}

  /** Reads the source's manifest: a 4xx/502 here, before any progress is streamed. */
  async resolve(body: PullImageBody, signal: AbortSignal): Promise<PullPlan> {
    let plan: PullPlan;
    try {
      plan = await this.puller.resolve(
        {
          source: body.source,
          ...(body.repository !== undefined ? { repository: body.repository } : {}),
          ...(body.tag !== undefined ? { tag: body.tag } : {}),
          credentials: body.credentials ?? null,
        },
        signal,
      );
    } catch (err) {
      throw remoteError(body.source, err);
    }
    const conflict = mirrorWriteConflict(
      plan.repository,
      this.config.registryClients.mirrors.map((m) => m.prefix),
    );
    if (conflict !== null) {
      throw new StratumError('BAD_REQUEST', `pull ${body.source}: ${conflict}`);
    }
    return plan;
  }

  async fetch(plan: PullPlan, onEvent: (e: PullEvent) => void, signal: AbortSignal): Promise<void> {
    try {
      await this.puller.fetch(plan, onEvent, signal);
    } catch (err) {
      throw remoteError(plan.source, err);
    }
  }
}

/**
 * The other registry's failures as our codes: its 404 is IMAGE_UNKNOWN, anything else it
 * answered (or not) is PULL_FAILED (502), never its own 401 passed on as a challenge of ours.
 */
function remoteError(source: string, err: unknown): unknown {
  if (err instanceof RemoteRegistryError) {
    return err.remoteStatus === 404
      ? new StratumError('IMAGE_UNKNOWN', `pull ${source}: ${err.message}`)
      : new StratumError('PULL_FAILED', `pull ${source}: ${err.message}`);
  }
  if (err instanceof RegistryError && err.code === 'NAME_INVALID') {
    return new StratumError('NAME_INVALID', err.message);
  }
  if (err instanceof RegistryError && (err.code === 'DIGEST_INVALID' || err.code === 'SIZE_INVALID')) {
    return new StratumError('PULL_FAILED', `pull ${source}: ${err.message}`);
  }
  return err;
}
