// Private keys handed to a build for RUN --mount=type=ssh (as `docker buildx build --ssh id=path`).
import { utils, type ParsedKey } from 'ssh2';
import { isSafeName } from '@stratum/confine';
import { StratumError } from '@stratum/contracts';

/** Most keys one ssh id may serve (`--ssh default=a,b`). */
export const MAX_SSH_KEYS_PER_ID = 8;
/** Largest private key file: an RSA 16384-bit key in OpenSSH format is about 13 KiB. */
export const MAX_SSH_KEY_BYTES = 64 * 1024;
/** Key types the agent serves (DSA is gone from OpenSSH; certificates are not keys). */
export const SSH_KEY_TYPES: readonly string[] = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
];

const bad = (message: string): StratumError => new StratumError('BAD_REQUEST', message);

/**
 * Parses one private key (OpenSSH `-----BEGIN OPENSSH PRIVATE KEY-----`, PEM PKCS#1/SEC1/PKCS#8)
 * with ssh2's parser, which reads the OpenSSH format Node's crypto cannot. An encrypted key, a
 * public key or an unsupported type is refused naming the ssh id (never the key's bytes).
 */
export function parseSshPrivateKey(id: string, pem: Buffer): ParsedKey {
  if (pem.length > MAX_SSH_KEY_BYTES) {
    throw bad(`ssh key for "${id}" is ${pem.length} bytes, larger than the limit of ${MAX_SSH_KEY_BYTES}`);
  }
  const parsed = utils.parseKey(pem);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | Error | undefined) : parsed;
  if (key === undefined || key instanceof Error) {
    const why =
      key instanceof Error && /passphrase|encrypted/i.test(key.message)
        ? 'it is passphrase-protected (give an unencrypted copy, e.g. ssh-keygen -p -N "" -f <copy>)'
        : 'it is not an ssh private key (OpenSSH or PEM format)';
    throw bad(`ssh key for "${id}" cannot be used: ${why}`);
  }
  if (!key.isPrivateKey()) {
    throw bad(`ssh key for "${id}" is a public key; give the private key file`);
  }
  if (!SSH_KEY_TYPES.includes(key.type)) {
    throw bad(`ssh key for "${id}" has type ${key.type}; supported: ${SSH_KEY_TYPES.join(', ')}`);
  }
  return key;
}

/** Checks the ids and keys of a build's or a project's ssh keys (id -> private key files). */
export function checkSshKeys(ssh: ReadonlyMap<string, readonly Buffer[]>): void {
  for (const [id, keys] of ssh) {
    if (!isSafeName(id)) {
      throw bad(
        `invalid ssh id ${JSON.stringify(String(id).slice(0, 80))}: expected 1-128 of [A-Za-z0-9_.-], not starting with "." or "-"`,
      );
    }
    if (keys.length === 0 || keys.length > MAX_SSH_KEYS_PER_ID) {
      throw bad(`ssh id "${id}" takes 1 to ${MAX_SSH_KEYS_PER_ID} keys, got ${keys.length}`);
    }
    for (const k of keys) {
      parseSshPrivateKey(id, k);
    }
  }
}

/** `ssh-ed25519 AAAA… comment`: the public half, safe to show (a forge's deploy key form). */
export function sshPublicKeyLine(key: ParsedKey): string {
  return `${key.type} ${key.getPublicSSH().toString('base64')}`;
}
