import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { StratumConfig } from '@stratum/config';
import { addToOutbox, RegistryOutboxEntry } from '@stratum/jobs';
import { ManifestEvent } from '@stratum/registry';

const logger = new Logger('RegistryNotifications');

/** Distribution's notification envelope media type (https://distribution.github.io/distribution/about/notifications/). */
export const ENVELOPE_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

/** The API's base URL as receivers see it (PUBLIC_URL, else host and port). */
function publicBase(config: StratumConfig): string {
  return (config.api.publicUrl ?? `http://${config.api.host}:${config.api.port}`).replace(/\/+$/, '');
}

/**
 * A repository change as Distribution notifies it: `{"events": [{id, timestamp, action, target:
 * {mediaType, size, digest, length, repository, url, tag}, request, actor, source}]}`. `manifest`
 * (its media type and size) is null when the bytes cannot be read any more.
 */
export function registryEnvelope(
  entry: RegistryOutboxEntry,
  manifest: { readonly mediaType: string; readonly size: number } | null,
  config: StratumConfig,
): string {
  const base = publicBase(config);
  const host = new URL(base).host;
  const target = {
    ...(manifest !== null
      ? { mediaType: manifest.mediaType, size: manifest.size, length: manifest.size }
      : {}),
    digest: entry.digest,
    repository: entry.repository,
    url: `${base}/v2/${entry.repository}/manifests/${entry.digest}`,
    ...(entry.tag !== null ? { tag: entry.tag } : {}),
  };
  return JSON.stringify({
    events: [
      {
        id: entry.id,
        timestamp: entry.at,
        action: entry.action,
        target,
        request: { id: entry.id, host, method: entry.action === 'push' ? 'PUT' : 'DELETE' },
        actor: {},
        source: { addr: host, instanceID: entry.instance },
      },
    ],
  });
}

/**
 * A manifest pushed by digest through /v2 (tag writes and deletions are told by the repository
 * store, see REPOSITORY_EVENTS): written to the outbox stream, which the API's OutboxRelay sends
 * to the service's receivers (NOTIFY_URLS). A Redis error is logged and the push goes on.
 */
export function registryNotifier(redis: Redis): (e: ManifestEvent) => Promise<void> {
  return async (e) => {
    const tx = redis.multi();
    addToOutbox(tx, {
      kind: 'registry',
      id: randomUUID(),
      at: new Date().toISOString(),
      action: e.action,
      repository: e.repository,
      tag: e.tag,
      digest: e.digest,
      instance: `stratum-${process.pid}`,
    });
    await tx.exec().catch((err: unknown) => {
      logger.warn(
        `registry.${e.action} of ${e.repository} not queued: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
  };
}
