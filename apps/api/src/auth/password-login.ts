import { RegistryError } from '@stratum/registry';
import { CredentialVerifier, Principal } from './credential-verifier';
import { LoginThrottle, LoginThrottledError } from './login-throttle';

/**
 * A password login on the registry (the token endpoint, Basic credentials on /v2/): rate limited
 * per user name and client address before the password is looked at, then checked (bcrypt off
 * the event loop, same cost for unknown names). A locked-out attempt is the registry's
 * TOOMANYREQUESTS (429) with Retry-After, and costs no hashing.
 */
export class PasswordLogin {
  constructor(
    private readonly verifier: CredentialVerifier,
    private readonly throttle: LoginThrottle,
  ) {}

  async login(username: string, password: string, address: string | undefined): Promise<Principal | null> {
    try {
      await this.throttle.attempt(username, address);
    } catch (err) {
      if (err instanceof LoginThrottledError) {
        throw new RegistryError('TOOMANYREQUESTS', err.message, undefined, {
          headers: { 'Retry-After': String(err.retryAfterSeconds) },
        });
      }
      throw err;
    }
    const principal = await this.verifier.verifyPassword(username, password);
    if (principal !== null) {
      await this.throttle.succeeded(username, address);
    }
    return principal;
  }
}
