import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { StratumConfig } from '@stratum/config';
import type { Redis } from 'ioredis';
import { addToOutbox } from '@stratum/jobs';
import { ManifestEvent } from '@stratum/registry';

const logger = new Logger('RegistryNotifications');

/** Distribution's notification envelope media type (https://distribution.github.io/distribution/about/notifications/). */
export const ENVELOPE_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

/**
 * A manifest push or delete as Distribution notifies it: `{"events": [{id, timestamp, action,
 * target: {mediaType, size, digest, length, repository, url, tag}, request, actor, source}]}`,
 * to the service's receivers (NOTIFY_URLS), through the same outbox stream as build events (the
 * API's OutboxRelay queues it). A Redis error is logged and the push goes on: a receiver's
 * notification never fails a push.
 */
export function registryNotifier(redis: Redis, config: StratumConfig): (e: ManifestEvent) => Promise<void> {
  const base = (config.api.publicUrl ?? `http://${config.api.host}:${config.api.port}`).replace(/\/+$/, '');
  const host = new URL(base).host;
  return async (e) => {
    const id = randomUUID();
    const target = {
      ...(e.mediaType !== null ? { mediaType: e.mediaType } : {}),
      ...(e.size !== null ? { size: e.size, length: e.size } : {}),
      ...(e.digest !== '' ? { digest: e.digest } : {}),
      repository: e.repository,
      ...(e.digest !== '' ? { url: `${base}/v2/${e.repository}/manifests/${e.digest}` } : {}),
      ...(e.tag !== null ? { tag: e.tag } : {}),
    };
    const body = JSON.stringify({
      events: [
        {
          id,
          timestamp: new Date().toISOString(),
          action: e.action,
          target,
          request: { id: randomUUID(), host, method: e.action === 'push' ? 'PUT' : 'DELETE' },
          actor: {},
          source: { addr: host, instanceID: `stratum-${process.pid}` },
        },
      ],
    });
    const tx = redis.multi();
    addToOutbox(tx, {
      kind: 'notification',
      id,
      at: new Date().toISOString(),
      type: `registry.${e.action}`,
      body,
      contentType: ENVELOPE_MEDIA_TYPE,
      project: null,
    });
    await tx.exec().catch((err: unknown) => {
      logger.warn(
        `registry.${e.action} of ${e.repository} not queued: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
  };
}
