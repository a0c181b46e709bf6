import { createHash } from 'node:crypto';
import type { StratumConfig } from '@stratum/config';
import { Digest, PushJobData, PushRecord, StratumError } from '@stratum/contracts';
import { newPushRecord, parsePushTarget } from './image-pusher';
import { mirrorWriteConflict } from './pull-through-cache';
import { PushRecordStore } from './push-record-store';
import { RegistryCredentials } from './registry-client';

/** Where push jobs go (the `push` queue's producer, PushProducer of @stratum/jobs). */
export interface PushQueue {
  /** Enqueues with `jobId = pushId`: a second call for the same push is a no-op while the job is kept. */
  push(data: PushJobData): Promise<void>;
}

/** A push to start: an image we hold and where it goes. */
export interface PushSubmission {
  /** A new random id, or {@link pushIdForBuild} for a build's push. */
  readonly pushId: string;
  /** Our repository holding the manifest. */
  readonly sourceRepository: string;
  readonly manifestDigest: Digest;
  /** `repo:tag` (ours) or `host[:port]/repo:tag` (another registry). */
  readonly targets: readonly string[];
  /** For the other registries; kept encrypted until the push ends (see PushRecordStore). */
  readonly credentials?: RegistryCredentials | null;
  /** How the source was named, for the record (default `repo@digest`). */
  readonly source?: string;
}

export interface PushSubmitterOptions {
  /** Hosts naming this registry (its public address): targets there are ours. */
  readonly localRegistries?: readonly string[];
  /** Pull-through mirror prefixes (REGISTRY_MIRRORS): no target of ours may lie under one. */
  readonly mirrorPrefixes?: readonly string[];
}

/** The options from the configuration: our public host, the mirror prefixes (API and worker alike). */
export function pushSubmitterOptions(
  config: Pick<StratumConfig, 'api' | 'registryClients'>,
): PushSubmitterOptions {
  return {
    localRegistries: config.api.publicUrl === null ? [] : [new URL(config.api.publicUrl).host],
    mirrorPrefixes: config.registryClients.mirrors.map((m) => m.prefix),
  };
}

/**
 * The pushId of the push a build starts for its `push=true` targets: derived from the build's
 * id (UUID-shaped, like random push ids), so a retried build job submits the same push again,
 * which records and enqueues nothing new.
 */
export function pushIdForBuild(buildId: string): string {
  const h = createHash('sha256').update(`stratum-build-push:${buildId}`).digest('hex');
  // RFC 9562 layout with version 8 (custom) and the RFC variant bits.
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Starts pushes: checks the targets and credentials, records the push (once) and enqueues its
 * `push` job (once); a worker's ImagePusher does the copying. The one path for both the push
 * API and a build with `push=true`.
 */
export class PushSubmitter {
  constructor(
    private readonly records: PushRecordStore,
    private readonly queue: PushQueue,
    private readonly options: PushSubmitterOptions = {},
  ) {}

  /**
   * Throws BAD_REQUEST naming the problem: a malformed target, a target of ours under a mirror
   * prefix, or credentials when none can be kept (no AUTH_SECRET).
   */
  check(targets: readonly string[], credentials: RegistryCredentials | null = null): void {
    for (const target of targets) {
      let parsed;
      try {
        parsed = parsePushTarget(target, this.options.localRegistries ?? []);
      } catch (err) {
        throw new StratumError('BAD_REQUEST', `target ${JSON.stringify(target)}: ${(err as Error).message}`);
      }
      const conflict =
        parsed.kind === 'local'
          ? mirrorWriteConflict(parsed.repository, this.options.mirrorPrefixes ?? [])
          : null;
      if (conflict !== null) {
        throw new StratumError('BAD_REQUEST', `target ${JSON.stringify(target)}: ${conflict}`);
      }
    }
    if (credentials !== null) {
      this.records.assertKeepsCredentials();
    }
  }

  /**
   * Records and enqueues a push; answers its record (the existing one when this push was
   * submitted before). Idempotent per pushId: the record is created only if absent and the
   * job id is the pushId, so submitting again (after a crash between the two) completes what
   * the first call began without starting a second push.
   */
  async submit(submission: PushSubmission): Promise<PushRecord> {
    this.check(submission.targets, submission.credentials ?? null);
    const data: PushJobData = {
      pushId: submission.pushId,
      manifestDigest: submission.manifestDigest,
      sourceRepository: submission.sourceRepository,
      targets: [...new Set(submission.targets)],
    };
    const record = newPushRecord(data, submission.source);
    const created = await this.records.create(record, submission.credentials ?? null);
    await this.queue.push(data);
    return created ? record : ((await this.records.get(data.pushId)) ?? record);
  }
}
