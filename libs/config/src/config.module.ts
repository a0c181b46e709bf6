import type { DynamicModule } from '@nestjs/common';
import { loadConfig, StratumConfig } from './config';

/** Injection token for the validated {@link StratumConfig}. */
export const STRATUM_CONFIG = Symbol('STRATUM_CONFIG');

/**
 * Provides the validated config to every module (global). A plain class returning a dynamic
 * module, without `@Module()`: Nest needs no decorator for that, and without it this lib loads
 * no `@nestjs/common` at run time — the CLI, which imports `loadCliConfig` from here, starts
 * ~75 ms faster.
 */
export class ConfigModule {
  /** Provides an already validated config (validate in main.ts before Nest boots, so errors are plain). */
  static forRoot(config: StratumConfig = loadConfig()): DynamicModule {
    return {
      module: ConfigModule,
      global: true,
      providers: [{ provide: STRATUM_CONFIG, useValue: config }],
      exports: [STRATUM_CONFIG],
    };
  }
}
