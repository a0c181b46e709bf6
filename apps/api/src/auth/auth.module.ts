import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { RegistryTokenIssuer } from '@stratum/registry';
import { AllowAllRegistryAuthorizer, REGISTRY_AUTHORIZER } from '../registry/registry-access.guard';
import { ApiTokenGuard } from './api-token.guard';
import { CredentialVerifier } from './credential-verifier';
import { RegistryAccessPolicy } from './registry-access-policy';
import { RegistryTokenService } from './registry-token.service';
import { TokenRegistryAuthorizer } from './token-registry-authorizer';

/**
 * Authentication: the registry's {@link REGISTRY_AUTHORIZER} (Docker token auth when
 * REGISTRY_AUTH=token, everything allowed otherwise), the token endpoint's service (null when
 * registry auth is off) and the opt-in API token guard on /api/.
 */
@Global()
@Module({
  providers: [
    {
      provide: CredentialVerifier,
      inject: [STRATUM_CONFIG],
      useFactory: (c: StratumConfig) => new CredentialVerifier(c.auth),
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
      inject: [STRATUM_CONFIG, RegistryTokenIssuer, CredentialVerifier, RegistryAccessPolicy],
      useFactory: (
        c: StratumConfig,
        issuer: RegistryTokenIssuer | null,
        verifier: CredentialVerifier,
        policy: RegistryAccessPolicy,
      ) =>
        c.auth.registry === 'token' && issuer !== null
          ? new RegistryTokenService(c.auth, issuer, verifier, policy)
          : null,
    },
    {
      provide: REGISTRY_AUTHORIZER,
      inject: [STRATUM_CONFIG, RegistryTokenIssuer, CredentialVerifier, RegistryAccessPolicy],
      useFactory: (
        c: StratumConfig,
        issuer: RegistryTokenIssuer | null,
        verifier: CredentialVerifier,
        policy: RegistryAccessPolicy,
      ) =>
        c.auth.registry === 'token' && issuer !== null
          ? new TokenRegistryAuthorizer(c.auth, issuer, verifier, policy, c.api.publicUrl)
          : new AllowAllRegistryAuthorizer(),
    },
    { provide: APP_GUARD, useClass: ApiTokenGuard },
  ],
  exports: [REGISTRY_AUTHORIZER, RegistryTokenService, CredentialVerifier],
})
export class AuthModule {}
