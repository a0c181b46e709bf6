import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createApiApp } from '../../apps/api/src/bootstrap';
import { loadConfig, StratumConfig } from '@stratum/config';
import { freePort, RedisServerHandle, startRedisServer } from './redis-server';

export interface ApiServerHandle {
  readonly app: INestApplication;
  readonly config: StratumConfig;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  close(): Promise<void>;
}

/** The configuration an e2e test runs with: its own Redis, data dir and worker id. */
export function testConfig(env: Record<string, string>): StratumConfig {
  return loadConfig({ LOG_LEVEL: 'warn', PRETTY_LOGS: 'false', JOB_ATTEMPTS: '1', ...env });
}

/** The real API application, in process, listening on a free port of 127.0.0.1. */
export async function startApiServer(config: StratumConfig): Promise<ApiServerHandle> {
  const port = await freePort();
  const app = await createApiApp({ ...config, api: { ...config.api, host: '127.0.0.1', port } });
  await app.listen(port, '127.0.0.1');
  return {
    app,
    config,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      // A request the API never answers must not keep close() waiting forever.
      const server = app.getHttpServer() as import('node:http').Server;
      const force = setTimeout(() => server.closeAllConnections(), 2000);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
      }
    },
  };
}

/** An API on its own redis-server and data dir, with a scratch dir for the test's files. */
export interface TestApi {
  readonly redis: RedisServerHandle;
  readonly dataDir: string;
  /** Scratch directory for the test (image layouts, contexts), removed by close(). */
  readonly work: string;
  readonly api: ApiServerHandle;
  /** `127.0.0.1:<port>`, the registry host as clients name it. */
  readonly host: string;
  readonly http: ReturnType<typeof request>;
  /** Closes the API, stops redis-server and removes both directories. */
  close(): Promise<void>;
}

/**
 * Starts redis-server and the API (testConfig with REDIS_URL, DATA_DIR and `env`), with data and
 * scratch dirs named `stratum-<name>-e2e-*` and `stratum-<name>-work-*`.
 */
export async function startTestApi(name: string, env: Record<string, string>): Promise<TestApi> {
  const redis = await startRedisServer();
  const dataDir = await mkdtemp(join(tmpdir(), `stratum-${name}-e2e-`));
  const work = await mkdtemp(join(tmpdir(), `stratum-${name}-work-`));
  const cleanUp = async (api?: ApiServerHandle): Promise<void> => {
    await api?.close();
    await redis.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  };
  let api: ApiServerHandle;
  try {
    api = await startApiServer(testConfig({ REDIS_URL: redis.url, DATA_DIR: dataDir, ...env }));
  } catch (err) {
    await cleanUp();
    throw err;
  }
  return {
    redis,
    dataDir,
    work,
    api,
    host: api.url.replace('http://', ''),
    http: request(api.url),
    close: () => cleanUp(api),
  };
}
