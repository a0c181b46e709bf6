import 'reflect-metadata';
import { loadConfigOrExit } from '@stratum/config';
import { createApiApp } from './bootstrap';

async function main(): Promise<void> {
  const config = loadConfigOrExit('stratum-api');
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
