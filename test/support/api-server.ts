import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { createApiApp } from '../../apps/api/src/bootstrap';
import { loadConfig, StratumConfig } from '@stratum/config';
import { freePort } from './redis-server';

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
