import { DynamicModule, Global, Module } from '@nestjs/common';
import { loadConfig, StratumConfig } from './config';

/** Injection token for the validated {@link StratumConfig}. */
export const STRATUM_CONFIG = Symbol('STRATUM_CONFIG');

@Global()
@Module({})
export class ConfigModule {
  /** Provides an already validated config (validate in main.ts before Nest boots, so errors are plain). */
  static forRoot(config: StratumConfig = loadConfig()): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: STRATUM_CONFIG, useValue: config }],
      exports: [STRATUM_CONFIG],
    };
  }
}
