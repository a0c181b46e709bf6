import 'reflect-metadata';
import { ConfigError, loadConfig, StratumConfig } from '@stratum/config';
import { createApiApp } from './bootstrap';

async function main(): Promise<void> {
  let config: StratumConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`stratum-api: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const app = await createApiApp(config);
  await app.listen(config.api.port, config.api.host);
  process.stdout.write(
    `stratum-api listening on http://${config.api.host}:${config.api.port} (docs at /docs)\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(
    `stratum-api: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
