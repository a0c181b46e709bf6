import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { loadConfigOrExit, loggerLevels } from '@stratum/config';
import { WorkerModule } from './worker.module';

async function main(): Promise<void> {
  const config = loadConfigOrExit('stratum-worker');
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), {
    logger: loggerLevels(config.logLevel),
  });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  await app.init();
  new Logger('Worker').log(`stratum-worker ${config.worker.id} ready (pid ${process.pid})`);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `stratum-worker: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
