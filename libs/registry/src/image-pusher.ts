import { PushJobData, PushRecord, PushState } from '@stratum/contracts';
import { parseReference } from '@stratum/oci';
import { BlobDigest, isBlobDigest, isStorageError } from '@stratum/storage';
import { BlobOutcome, ImageTransfer } from './image-transfer';
import { PushRecordStore } from './push-record-store';
import { RemoteRegistryError } from './registry-client';
import { RegistryClients } from './registry-clients';
import { RegistryError } from './registry-error';

/** Where a push target points. */
export type PushTarget =
  | { readonly kind: 'local'; readonly repository: string; readonly tag: string }
  | { readonly kind: 'remote'; readonly registry: string; readonly repository: string; readonly tag: string };

/**
 * `repo:tag` (ours) or `host[:port]/repo:tag` (another registry; Docker's rule: the first
 * component is a host when it has a `.` or `:` or is `localhost`). A host listed in
 * `localRegistries` (our own public address) means ours. The tag defaults to `latest`; a digest
 * is refused (a push names where the image goes).
 */
export function parsePushTarget(target: string, localRegistries: readonly string[] = []): PushTarget {
  let ref;
  try {
    ref = parseReference(target);
  } catch (err) {
    throw new RegistryError('NAME_INVALID', err instanceof Error ? err.message : String(err), { target });
  }
  if (ref.digest !== null) {
    throw new RegistryError('TAG_INVALID', `push target ${target} must name a tag, not a digest`, { target });
  }
  const tag = ref.tag ?? 'latest';
  if (ref.registry === null || localRegistries.includes(ref.registry)) {
    return { kind: 'local', repository: ref.repository, tag };
  }
  return { kind: 'remote', registry: ref.registry, repository: ref.repository, tag };
}

const CANCELLED = 'push cancelled';
const PROGRESS_INTERVAL_MS = 1000;

/** A push that failed; `transient` when trying again may help. */
export class PushFailedError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
    this.name = 'PushFailedError';
  }
}

/** True for a failure that may pass on a later attempt (network, 5xx, 429, storage unavailable). */
export function isTransientPushError(err: unknown): boolean {
  if (err instanceof RemoteRegistryError) {
    return err.transient;
  }
  if (err instanceof RegistryError) {
    return err.code === 'UNAVAILABLE';
  }
  if (isStorageError(err, 'UNAVAILABLE')) {
    return true;
  }
  // Anything unexpected (a reset socket, a timeout) is worth another try.
  return !(
    err instanceof Error &&
    'code' in err &&
    typeof err.code === 'string' &&
    /^[A-Z_]+$/.test(err.code)
  );
}

/** A new push record for a job's payload. */
export function newPushRecord(data: PushJobData, source?: string): PushRecord {
  return {
    id: data.pushId,
    state: PushState.Queued,
    source: source ?? `${data.sourceRepository}@${data.manifestDigest}`,
    sourceRepository: data.sourceRepository,
    manifestDigest: data.manifestDigest,
    targets: data.targets.map((target) => ({
      target,
      state: PushState.Queued,
      blobs: { uploaded: 0, exists: 0, mounted: 0, linked: 0 },
      error: null,
    })),
    attempts: 0,
    error: null,
    createdAt: new Date().toISOString(),
    finishedAt: null,
  };
}

/**
 * Runs a push job: each target in turn, ours by linking (tag last), another registry's through
 * {@link ImageTransfer.pushRemote}, blobs mounted from earlier targets on the same registry.
 * Targets done by an earlier attempt are skipped, so a retry resumes. Progress and outcome go
 * to the {@link PushRecordStore}.
 */
export class ImagePusher {
  constructor(
    private readonly transfer: ImageTransfer,
    private readonly clients: RegistryClients,
    private readonly records: PushRecordStore,
    private readonly localRegistries: readonly string[] = [],
  ) {}

  /** Pushes to every target; throws {@link PushFailedError} when one failed. */
  async run(data: PushJobData, options: { lastAttempt: boolean; signal?: AbortSignal }): Promise<string[]> {
    if (!isBlobDigest(data.manifestDigest)) {
      throw new PushFailedError(`invalid manifest digest ${String(data.manifestDigest)}`, false);
    }
    const digest: BlobDigest = data.manifestDigest;
    // A job whose record has expired (or was never written) gets one; an existing one is kept.
    await this.records.create(newPushRecord(data), null);
    const started = await this.records.update(data.pushId, (r) => {
      r.state = PushState.Running;
      r.attempts += 1;
      r.error = null;
    });
    const credentials = await this.records.credentials(data.pushId);
    const mountFrom = new Map<string, string[]>();
    const pushed: string[] = [];
    let failure: { message: string; transient: boolean } | null = null;
    let cancelled = await this.records.isCancelRequested(data.pushId);
    for (const target of data.targets) {
      const previous = started?.targets.find((t) => t.target === target);
      if (cancelled && previous?.state !== PushState.Succeeded) {
        failure ??= { message: CANCELLED, transient: false };
        await this.setTarget(data.pushId, target, PushState.Failed, CANCELLED);
        continue;
      }
      let parsed: PushTarget;
      try {
        parsed = parsePushTarget(target, this.localRegistries);
      } catch (err) {
        failure ??= { message: `${target}: ${messageOf(err)}`, transient: false };
        await this.setTarget(data.pushId, target, PushState.Failed, messageOf(err));
        continue;
      }
      if (previous?.state === PushState.Succeeded) {
        pushed.push(target);
        if (parsed.kind === 'remote') {
          mountFrom.set(parsed.registry, [...(mountFrom.get(parsed.registry) ?? []), parsed.repository]);
        }
        continue;
      }
      await this.setTarget(data.pushId, target, PushState.Running, null, true);
      const counts = { uploaded: 0, exists: 0, mounted: 0, linked: 0 };
      let changed = false;
      const progress = (e: { outcome: BlobOutcome }): void => {
        counts[e.outcome] += 1;
        changed = true;
      };
      // Live progress: the blob counts reach the record (GET /api/v1/pushes/:id) every second.
      const reporter = setInterval(() => {
        if (changed) {
          changed = false;
          const snapshot = { ...counts };
          // Counts only, and only while running: a late write never undoes the final state.
          this.records
            .update(data.pushId, (r) => {
              const t = r.targets.find((x) => x.target === target);
              if (t !== undefined && t.state === PushState.Running) {
                t.blobs = snapshot;
              }
            })
            .catch(() => undefined);
        }
      }, PROGRESS_INTERVAL_MS);
      reporter.unref();
      try {
        if (parsed.kind === 'local') {
          await this.transfer.pushLocal(
            data.sourceRepository,
            digest,
            parsed.repository,
            parsed.tag,
            progress,
            options.signal,
          );
        } else {
          const client = this.clients.clientFor(parsed.registry, credentials);
          await this.transfer.pushRemote(
            client,
            data.sourceRepository,
            digest,
            parsed.repository,
            parsed.tag,
            {
              mountFrom: mountFrom.get(parsed.registry) ?? [],
              progress,
              ...(options.signal !== undefined ? { signal: options.signal } : {}),
            },
          );
          mountFrom.set(parsed.registry, [...(mountFrom.get(parsed.registry) ?? []), parsed.repository]);
        }
        pushed.push(target);
        await this.setTarget(data.pushId, target, PushState.Succeeded, null, false, counts);
      } catch (err) {
        // An abort is a cancel when one was asked for; otherwise (worker shutdown) it is retried.
        cancelled = options.signal?.aborted === true && (await this.records.isCancelRequested(data.pushId));
        const transient = !cancelled && isTransientPushError(err);
        const message = cancelled ? CANCELLED : messageOf(err);
        failure ??= { message: cancelled ? CANCELLED : `${target}: ${message}`, transient };
        failure.transient &&= transient;
        const final = !transient || options.lastAttempt;
        await this.setTarget(
          data.pushId,
          target,
          final ? PushState.Failed : PushState.Queued,
          message,
          false,
          counts,
        );
      } finally {
        clearInterval(reporter);
      }
    }
    const final = failure === null || !failure.transient || options.lastAttempt;
    await this.records.update(data.pushId, (r) => {
      r.state = failure === null ? PushState.Succeeded : final ? PushState.Failed : PushState.Queued;
      r.error = failure?.message ?? null;
      r.finishedAt = final ? new Date().toISOString() : null;
    });
    if (final) {
      await this.records.dropCredentials(data.pushId);
    }
    if (failure !== null) {
      throw new PushFailedError(failure.message, failure.transient);
    }
    return pushed;
  }

  private async setTarget(
    id: string,
    target: string,
    state: PushState,
    error: string | null,
    reset = false,
    counts?: { uploaded: number; exists: number; mounted: number; linked: number },
  ): Promise<void> {
    await this.records.update(id, (r) => {
      const t = r.targets.find((x) => x.target === target);
      if (t !== undefined) {
        t.state = state;
        t.error = error;
        if (reset) {
          t.blobs = { uploaded: 0, exists: 0, mounted: 0, linked: 0 };
        }
        if (counts !== undefined) {
          t.blobs = { ...counts };
        }
      }
    });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
