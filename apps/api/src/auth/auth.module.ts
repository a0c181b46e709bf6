import { Global, Module, OnApplicationShutdown } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import type { Redis } from 'ioredis';
import { REDIS } from '@stratum/jobs';
import { RegistryTokenIssuer } from '@stratum/registry';
import { AllowAllRegistryAuthorizer, REGISTRY_AUTHORIZER } from '../registry/registry-access.guard';
import { ApiTokenGuard } from './api-token.guard';
import { BcryptPool } from './bcrypt-pool';
import { CredentialVerifier } from './credential-verifier';
import { LoginThrottle } from './login-throttle';
import { PasswordLogin } from './password-login';
import { RegistryAccessPolicy } from './registry-access-policy';
import { RegistryTokenService } from './registry-token.service';
import { RepositoryAccess } from './repository-access';
import { RobotStore } from './robot-store';
import { AuditLog } from './audit-log';
import { AuditController } from './audit.controller';
import { RobotsController } from './robots.controller';
import { TokenRegistryAuthorizer } from './token-registry-authorizer';

/**
 * Authentication: the registry's {@link REGISTRY_AUTHORIZER} (Docker token auth when
 * REGISTRY_AUTH=token, everything allowed otherwise), the token endpoint's service (null when
 * registry auth is off) and the opt-in API token guard on /api/.
 */
@Global()
@Module({
  controllers: [RobotsController, AuditController],
  providers: [
    {
      provide: BcryptPool,
      inject: [STRATUM_CONFIG],
      useFactory: (c: StratumConfig) => new BcryptPool(c.auth.login.hashThreads),
    },
    { provide: RobotStore, inject: [REDIS], useFactory: (redis: Redis) => new RobotStore(redis) },
    {
      provide: AuditLog,
      inject: [STRATUM_CONFIG, REDIS],
      useFactory: (c: StratumConfig, redis: Redis) => new AuditLog(redis, c.auth.auditRetentionSeconds),
    },
    {
      provide: CredentialVerifier,
      inject: [STRATUM_CONFIG, BcryptPool, RobotStore],
      useFactory: (c: StratumConfig, pool: BcryptPool, robots: RobotStore) =>
        new CredentialVerifier(c.auth, pool, robots),
    },
    {
      provide: PasswordLogin,
      inject: [STRATUM_CONFIG, REDIS, CredentialVerifier],
      useFactory: (c: StratumConfig, redis: Redis, verifier: CredentialVerifier) =>
        new PasswordLogin(verifier, new LoginThrottle(redis, c.auth.login)),
    },
    {
      provide: RegistryAccessPolicy,
      inject: [STRATUM_CONFIG],
      useFactory: (c: StratumConfig) => new RegistryAccessPolicy(c.auth),
    },
    {
      provide: RegistryTokenIssuer,
      inject: [STRATUM_CONFIG],
      useFactory: (c: StratumConfig) =>
        c.auth.secret === null
          ? null
          : new RegistryTokenIssuer(c.auth.secret, c.auth.service, c.auth.tokenTtlSeconds),
    },
    {
      provide: RegistryTokenService,
      inject: [STRATUM_CONFIG, RegistryTokenIssuer, PasswordLogin, RegistryAccessPolicy],
      useFactory: (
        c: StratumConfig,
        issuer: RegistryTokenIssuer | null,
        logins: PasswordLogin,
        policy: RegistryAccessPolicy,
      ) =>
        c.auth.registry === 'token' && issuer !== null
          ? new RegistryTokenService(c.auth, issuer, logins, policy)
          : null,
    },
    {
      provide: REGISTRY_AUTHORIZER,
      inject: [STRATUM_CONFIG, RegistryTokenIssuer, PasswordLogin, RegistryAccessPolicy],
      useFactory: (
        c: StratumConfig,
        issuer: RegistryTokenIssuer | null,
        logins: PasswordLogin,
        policy: RegistryAccessPolicy,
      ) =>
        c.auth.registry === 'token' && issuer !== null
          ? new TokenRegistryAuthorizer(c.auth, issuer, logins, policy, c.api.publicUrl)
          : new AllowAllRegistryAuthorizer(),
    },
    { provide: APP_GUARD, useClass: ApiTokenGuard },
    RepositoryAccess,
  ],
  exports: [
    REGISTRY_AUTHORIZER,
    RegistryTokenService,
    CredentialVerifier,
    RepositoryAccess,
    RobotStore,
    AuditLog,
  ],
})
export class AuthModule implements OnApplicationShutdown {
  constructor(private readonly pool: BcryptPool) {}

  async onApplicationShutdown(): Promise<void> {
    await this.pool.close();
  }
}
