import { RegistryClient, RegistryClientOptions, RegistryCredentials } from './registry-client';

/** Settings for reaching other registries (StratumConfig.registryClients has this shape). */
export interface RegistryClientsOptions {
  /** `host[:port]` -> credentials used when a request brings none. */
  readonly credentials?: readonly {
    readonly host: string;
    readonly username: string;
    readonly password: string;
  }[];
  /** Hosts reached over plain HTTP. Loopback hosts always are (as Docker treats 127.0.0.0/8). */
  readonly insecureHosts?: readonly string[];
  readonly chunkSize?: number;
  readonly userAgent?: string;
}

/** True for `localhost[:port]` and `127.x.x.x[:port]`. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.replace(/:\d+$/, '');
  return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]';
}

/** Makes {@link RegistryClient}s with the configured credentials and transport per host. */
export class RegistryClients {
  constructor(private readonly options: RegistryClientsOptions = {}) {}

  /**
   * A client of `registry`; `credentials` (e.g. a push request's) win over the configured ones;
   * `insecure` (plain HTTP) defaults to loopback hosts and REGISTRY_INSECURE.
   */
  clientFor(registry: string, credentials?: RegistryCredentials | null, insecure?: boolean): RegistryClient {
    const configured = this.options.credentials?.find((c) => c.host === registry);
    const opts: RegistryClientOptions = {
      registry,
      insecure:
        insecure ?? (isLoopbackRegistry(registry) || (this.options.insecureHosts ?? []).includes(registry)),
      credentials:
        credentials ?? (configured ? { username: configured.username, password: configured.password } : null),
      ...(this.options.chunkSize !== undefined ? { chunkSize: this.options.chunkSize } : {}),
      ...(this.options.userAgent !== undefined ? { userAgent: this.options.userAgent } : {}),
    };
    return new RegistryClient(opts);
  }
}
