import 'reflect-metadata';
import { exitIfShutdownOverruns, isLoopbackHost, loadConfigOrExit } from '@stratum/config';
import { createApiApp } from './bootstrap';

async function main(): Promise<void> {
  const config = loadConfigOrExit('stratum-api');
  const app = await createApiApp(config);
  // Closing waits for open requests (a log stream lasts as long as its build) and for Redis
  // (its clients retry forever when it is gone): bounded, so a SIGTERM always ends the API.
  exitIfShutdownOverruns('stratum-api', config.api.shutdownTimeoutMs, (m) => process.stderr.write(`${m}\n`));
  await app.listen(config.api.port, config.api.host);
  process.stdout.write(
    `stratum-api listening on http://${config.api.host}:${config.api.port} (docs at /docs)\n`,
  );
  if (config.storage.kind === 's3') {
    // Whether layer bytes bypass the API (S3_REDIRECT): an operator should see which and why.
    process.stdout.write(`stratum-api: S3 blob redirects ${config.storage.redirectReason ?? 'off'}\n`);
  }
  if (isLoopbackHost(config.api.host) && !(config.auth.registry === 'token' && config.auth.api)) {
    process.stdout.write(
      'stratum-api: loopback only, as no authentication is configured; set REGISTRY_AUTH=token and ' +
        'API_AUTH=true (README "Access and authentication") to serve other machines\n',
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `stratum-api: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
