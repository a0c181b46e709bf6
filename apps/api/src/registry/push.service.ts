import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { PushRecord, PushState, StratumError } from '@stratum/contracts';
import { parseReference } from '@stratum/oci';
import {
  PushRecordStore,
  PushSubmitter,
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
 * Push requests: resolves the image, then PushSubmitter validates the targets, records the push
 * (credentials apart, encrypted) and enqueues the `push` job; the worker does the copying
 * (workers/builder/src/push). A build with `push: true` goes through the same PushSubmitter
 * on its worker.
 */
@Injectable()
export class PushService {
  constructor(
    @Inject(RegistryService) private readonly registry: RegistryService,
    @Inject(PushRecordStore) private readonly records: PushRecordStore,
    @Inject(PushSubmitter) private readonly submitter: PushSubmitter,
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
   * Records and enqueues a push of an image we hold. Throws BAD_REQUEST for a malformed target,
   * a target under a mirror prefix, or credentials this service cannot keep (no AUTH_SECRET).
   * Returns at once (202); `GET /api/v1/pushes/:id` follows it.
   */
  async submit(request: PushRequest): Promise<PushView> {
    const record = await this.submitter.submit({ ...request, pushId: randomUUID() });
    return view(record);
  }

  /**
   * `DELETE /api/v1/pushes/:id`: asks the push to stop (a queued one stops when taken, a running
   * one between blobs and manifests); it ends `failed` with "push cancelled". A finished push is
   * left as it is. Answers the record as it stands.
   */
  async cancel(id: string): Promise<PushView> {
    const record = await this.get(id);
    if (record.state === PushState.Queued || record.state === PushState.Running) {
      await this.records.requestCancel(id);
    }
    return record;
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
