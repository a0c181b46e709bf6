import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { PushRecord, StratumError } from '@stratum/contracts';
import { PushProducer } from '@stratum/jobs';
import { parseReference } from '@stratum/oci';
import {
  newPushRecord,
  parsePushTarget,
  PushRecordStore,
  RegistryCredentials,
  RegistryError,
  RegistryService,
} from '@stratum/registry';
import { PushView } from './push.dto';

/** What a push starts from: an image already in our registry, and where it goes. */
export interface PushRequest {
  /** Our repository holding the manifest. */
  readonly sourceRepository: string;
  readonly manifestDigest: `sha256:${string}`;
  readonly targets: readonly string[];
  readonly credentials?: RegistryCredentials | null;
  /** How the source was named, for the record (default `repo@digest`). */
  readonly source?: string;
}

/**
 * Push requests: validates the targets, records the push (credentials apart, encrypted) and
 * enqueues the `push` job; the worker does the copying (workers/builder/src/push). Also what the
 * builds service calls for a build with `push: true` (see {@link submit}).
 */
@Injectable()
export class PushService {
  constructor(
    @Inject(RegistryService) private readonly registry: RegistryService,
    @Inject(PushRecordStore) private readonly records: PushRecordStore,
    @Inject(PushProducer) private readonly producer: PushProducer,
  ) {}

  /** `POST /api/v1/images/:ref/push`: `ref` is `repo`, `repo:tag` or `repo@sha256:…` of ours. */
  async pushImage(
    ref: string,
    targets: readonly string[],
    credentials?: RegistryCredentials,
  ): Promise<PushView> {
    let parsed;
    try {
      parsed = parseReference(ref);
    } catch (err) {
      throw new StratumError('NAME_INVALID', err instanceof Error ? err.message : String(err));
    }
    if (parsed.registry !== null) {
      throw new StratumError('NAME_INVALID', `"${ref}" names another registry; push an image of this one`);
    }
    let manifest;
    try {
      manifest = await this.registry.getManifest(parsed.repository, parsed.digest ?? parsed.tag ?? 'latest');
    } catch (err) {
      if (err instanceof RegistryError && (err.code === 'MANIFEST_UNKNOWN' || err.code === 'NAME_UNKNOWN')) {
        throw new StratumError('IMAGE_UNKNOWN', `image "${ref}" not found`);
      }
      throw err;
    }
    return this.submit({
      sourceRepository: parsed.repository,
      manifestDigest: manifest.digest,
      targets,
      credentials: credentials ?? null,
      source: ref,
    });
  }

  /**
   * Records and enqueues a push of an image we hold. Throws BAD_REQUEST for a malformed target.
   * Returns at once (202); `GET /api/v1/pushes/:id` follows it.
   */
  async submit(request: PushRequest): Promise<PushView> {
    for (const target of request.targets) {
      try {
        parsePushTarget(target);
      } catch (err) {
        throw new StratumError('BAD_REQUEST', `target ${JSON.stringify(target)}: ${(err as Error).message}`);
      }
    }
    const data = {
      pushId: randomUUID(),
      manifestDigest: request.manifestDigest,
      sourceRepository: request.sourceRepository,
      targets: [...new Set(request.targets)],
    };
    const record = newPushRecord(data, request.source);
    await this.records.create(record, request.credentials ?? null);
    await this.producer.push(data);
    return view(record);
  }

  async get(id: string): Promise<PushView> {
    const record = /^[0-9a-f-]{36}$/.test(id) ? await this.records.get(id) : null;
    if (record === null) {
      throw new StratumError('PUSH_UNKNOWN', `push ${id} not found`);
    }
    return view(record);
  }
}

function view(record: PushRecord): PushView {
  return { ...record, url: `/api/v1/pushes/${record.id}` };
}
