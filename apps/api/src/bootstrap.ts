import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { loggerLevels, StratumConfig } from '@stratum/config';
import { AppModule } from './app.module';

/** Creates the API application (used by main.ts and by the e2e tests). */
export async function createApiApp(config: StratumConfig): Promise<INestApplication> {
  const app = await NestFactory.create(AppModule.forRoot(config), {
    logger: loggerLevels(config.logLevel),
    bodyParser: true,
  });
  app.enableShutdownHooks();
  if (config.api.trustProxy !== null) {
    // req.ip then comes from X-Forwarded-For as far as the trusted proxies go (login rate limits).
    (app.getHttpAdapter().getInstance() as { set(k: string, v: unknown): void }).set(
      'trust proxy',
      config.api.trustProxy,
    );
  }
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Stratum')
      .setDescription('Container image builds, containers, commits and the registry')
      .setVersion('1')
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs/openapi.json' });
  return app;
}
