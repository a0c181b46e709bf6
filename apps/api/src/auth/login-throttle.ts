import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { Redis } from 'ioredis';
import { AuthConfig } from '@stratum/config';
import { StratumError } from '@stratum/contracts';

/** A login refused before its password was looked at; `retryAfterSeconds` goes in Retry-After. */
export class LoginThrottledError extends StratumError {
  constructor(readonly retryAfterSeconds: number) {
    super('TOO_MANY_REQUESTS', `too many login attempts; try again in ${retryAfterSeconds} s`, {
      retryAfterSeconds,
    });
  }
}

// KEYS: user count, address count, user lock, address lock.
// ARGV: free attempts, longest lock (ms).
// A locked user or address gets the lock's remaining ms back and nothing is counted. Otherwise
// the attempt counts for both (the counts are forgotten a longest-lock after the last attempt),
// and an attempt past the free ones locks the next out: 1 s, then 2 s, 4 s… up to the longest.
// One script, so that twenty attempts arriving together are counted one after another.
const ATTEMPT = `
local wait = math.max(redis.call('PTTL', KEYS[3]), redis.call('PTTL', KEYS[4]), 0)
if wait > 0 then return wait end
local free = tonumber(ARGV[1])
local longest = tonumber(ARGV[2])
for i = 1, 2 do
  local n = redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], longest)
  if n > free then
    local ms = math.min(longest, 1000 * 2 ^ math.min(n - free - 1, 30))
    redis.call('SET', KEYS[i + 2], '1', 'PX', math.floor(ms))
  end
end
return 0
`;

// KEYS: user count, address count. A good password: the user's count starts again; the
// address's attempt is taken back (not reset: one good account must not buy an address
// unlimited guesses at the others).
const SUCCEEDED = `
redis.call('DEL', KEYS[1])
if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
return 0
`;

/**
 * The client address as the rate limit counts it: an IPv4-mapped IPv6 address is its IPv4
 * address, and IPv6 is counted per /64 (one host usually has a whole /64 to pick from).
 */
export function clientKey(address: string | undefined): string {
  const a = (address ?? 'unknown').trim().toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped !== null) {
    return mapped[1];
  }
  if (!isIPv6(a)) {
    return a;
  }
  const [head, tail = ''] = a.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = a.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/**
 * Rate limit and exponential back-off of password logins per user name and per client address,
 * kept in Redis so that every API replica sees the same counts. An attempt is counted when it
 * starts (so parallel guesses count before any of them is checked) and taken back when the
 * password was right; past `freeAttempts` each attempt locks the next one out for twice as long.
 * User names are hashed into the keys (any string may be tried as one).
 */
export class LoginThrottle {
  constructor(
    private readonly redis: Redis,
    private readonly config: AuthConfig['login'],
  ) {}

  private keys(username: string, address: string | undefined): [string, string, string, string] {
    const user = createHash('sha256').update(username).digest('hex').slice(0, 32);
    const addr = clientKey(address);
    return [
      `stratum:login:count:user:${user}`,
      `stratum:login:count:addr:${addr}`,
      `stratum:login:lock:user:${user}`,
      `stratum:login:lock:addr:${addr}`,
    ];
  }

  /** Counts an attempt; throws LoginThrottledError while the user or the address is locked out. */
  async attempt(username: string, address: string | undefined): Promise<void> {
    const wait = (await this.redis.eval(
      ATTEMPT,
      4,
      ...this.keys(username, address),
      this.config.freeAttempts,
      this.config.backoffMaxSeconds * 1000,
    )) as number;
    if (wait > 0) {
      throw new LoginThrottledError(Math.ceil(wait / 1000));
    }
  }

  /** The attempt's password was right. */
  async succeeded(username: string, address: string | undefined): Promise<void> {
    const [user, addr] = this.keys(username, address);
    await this.redis.eval(SUCCEEDED, 2, user, addr);
  }
}
