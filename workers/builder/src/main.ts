import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { exitIfShutdownOverruns, loadConfigOrExit, loggerLevels } from '@stratum/config';
import { WorkerModule } from './worker.module';

/** What a shutdown may take beyond WORKER_SHUTDOWN_TIMEOUT_MS before the worker exits anyway. */
const SHUTDOWN_MARGIN_MS = 5000;

async function main(): Promise<void> {
  const config = loadConfigOrExit('stratum-worker');
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), {
    logger: loggerLevels(config.logLevel),
  });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  // The graceful shutdown waits for running builds (WORKER_SHUTDOWN_TIMEOUT_MS) and then for
  // BullMQ to hand their jobs back through Redis; with Redis gone that second wait never ends.
  // Past the timeout and a margin it exits anyway: its jobs' locks expire and another worker
  // takes them, as after a crash.
  exitIfShutdownOverruns('stratum-worker', config.worker.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS, (m) =>
    new Logger('Worker').error(m),
  );
  await app.init();
  new Logger('Worker').log(`stratum-worker ${config.worker.id} ready (pid ${process.pid})`);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `stratum-worker: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
