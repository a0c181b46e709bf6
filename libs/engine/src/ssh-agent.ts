// The SSH agent a RUN --mount=type=ssh step talks to: a Unix socket served by the worker.
// Protocol: https://datatracker.ietf.org/doc/html/draft-miller-ssh-agent (REQUEST_IDENTITIES,
// SIGN_REQUEST with the rsa-sha2-256/512 flags); anything else is answered with FAILURE, so a
// step can list and use the keys but never add, remove, lock or export one.
import { sign as cryptoSign } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, open, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { AgentProtocol, utils, type ParsedKey } from 'ssh2';

/** Longest Unix socket path bind() takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/** Largest agent message accepted: a sign request carries a session hash or a signed file's digest. */
export const MAX_AGENT_MESSAGE_BYTES = 256 * 1024;
/** The requests served (draft-miller-ssh-agent §6.1); any other is answered with FAILURE. */
const SSH_AGENTC_REQUEST_IDENTITIES = 11;
const SSH_AGENTC_SIGN_REQUEST = 13;

/** Connections one agent serves at once (a step's parallel git fetches fit easily). */
export const MAX_AGENT_CONNECTIONS = 64;

/** ssh's `mpint`: big-endian, no leading zero bytes unless the top bit would read as a sign. */
function mpint(n: Buffer): Buffer {
  let i = 0;
  while (i < n.length - 1 && n[i] === 0) {
    i++;
  }
  const v = n.subarray(i);
  const body = (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

const ECDSA_HASH: Record<string, string> = {
  'ecdsa-sha2-nistp256': 'sha256',
  'ecdsa-sha2-nistp384': 'sha384',
  'ecdsa-sha2-nistp521': 'sha512',
};

/**
 * The signature blob (without its format name, which ssh2's `signReply` writes) of `data` by
 * `key`: raw for Ed25519, PKCS#1 v1.5 for RSA (SHA-1, or SHA-2 when the client asked), and
 * `mpint r, mpint s` for ECDSA (RFC 5656 §3.1.2).
 */
function signBlob(key: ParsedKey, data: Buffer, hash: string | undefined): Buffer {
  const ecdsaHash = ECDSA_HASH[key.type];
  if (ecdsaHash !== undefined) {
    const rs = cryptoSign(ecdsaHash, data, { key: key.getPrivatePEM(), dsaEncoding: 'ieee-p1363' });
    const half = rs.length / 2;
    return Buffer.concat([mpint(rs.subarray(0, half)), mpint(rs.subarray(half))]);
  }
  const sig = key.type === 'ssh-rsa' ? key.sign(data, hash ?? 'sha1') : key.sign(data);
  if (sig instanceof Error) {
    throw sig;
  }
  return sig;
}

/**
 * An ssh-agent serving fixed private keys on a Unix socket. ssh2 parses the keys (OpenSSH and
 * PEM formats of Ed25519, RSA and ECDSA, which Node's crypto alone cannot read) and frames the
 * agent protocol; the signing is Node's crypto. Close it to stop serving and remove the socket.
 */
export class SshAgentServer {
  private readonly sockets = new Set<Socket>();
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
    private readonly keys: readonly ParsedKey[],
  ) {}

  /**
   * Listens on `socketPath` (which must not exist) for `keys` (private key files), the socket
   * given to `uid:gid` with `mode` (BuildKit's defaults: root's, 0600).
   */
  static async listen(
    socketPath: string,
    keyFiles: readonly Buffer[],
    owner: { uid?: number; gid?: number; mode?: number } = {},
  ): Promise<SshAgentServer> {
    const keys = keyFiles.map((k) => {
      const parsed = utils.parseKey(k);
      const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | Error) : parsed;
      if (key instanceof Error || !key.isPrivateKey()) {
        throw new Error('an ssh key of this build is not a usable private key');
      }
      return key;
    });
    const server = createServer();
    server.maxConnections = MAX_AGENT_CONNECTIONS;
    const agent = new SshAgentServer(server, socketPath, keys);
    server.on('connection', (s) => agent.serve(s));
    // A path past sun_path's 108 bytes is bound through /proc/self/fd/<its directory>/<name>
    // (Linux resolves the magic link): the socket is made where asked, whatever the length.
    const dir =
      Buffer.byteLength(socketPath) > MAX_SOCKET_PATH
        ? await open(dirname(socketPath), constants.O_RDONLY | constants.O_DIRECTORY)
        : null;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(dir === null ? socketPath : `/proc/self/fd/${dir.fd}/${basename(socketPath)}`, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      await dir?.close();
    }
    try {
      await chown(socketPath, owner.uid ?? 0, owner.gid ?? 0);
      await chmod(socketPath, owner.mode ?? 0o600);
    } catch (err) {
      await agent.close();
      throw err;
    }
    return agent;
  }

  private serve(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const proto = new AgentProtocol(false);
    proto.on('error', () => socket.destroy());
    proto.on('identities', (req) => proto.getIdentitiesReply(req, [...this.keys]));
    proto.on('sign', (req, pubKey, data, opts) => {
      const blob = pubKey.getPublicSSH();
      const key = this.keys.find((k) => k.getPublicSSH().equals(blob));
      if (key === undefined) {
        proto.failureReply(req);
        return;
      }
      try {
        proto.signReply(req, signBlob(key, data, opts.hash));
      } catch {
        proto.failureReply(req);
      }
    });
    // Whole messages are framed here before ssh2 sees them: a length past the limit ends the
    // connection before a step can make the worker hold gigabytes, and a request ssh2 does not
    // parse reaches it as its type byte alone. ssh2 answers such a type with FAILURE but leaves
    // its payload in the buffer, to be read as the next message: OpenSSH 8.9+ clients send
    // SSH_AGENTC_EXTENSION (session-bind@openssh.com) before REQUEST_IDENTITIES, whose answer
    // then came out garbled and `ssh`/`git` saw no keys. Replies stay in request order.
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const length = pending.readUInt32BE(0);
        if (length === 0 || length > MAX_AGENT_MESSAGE_BYTES) {
          socket.destroy();
          return;
        }
        if (pending.length < 4 + length) {
          break;
        }
        const message = pending.subarray(0, 4 + length);
        pending = pending.subarray(4 + length);
        const type = message[4];
        proto.write(
          type === SSH_AGENTC_REQUEST_IDENTITIES || type === SSH_AGENTC_SIGN_REQUEST
            ? message
            : Buffer.from([0, 0, 0, 1, type]),
        );
      }
    });
    proto.on('data', (out: Buffer) => socket.write(out));
    socket.once('end', () => proto.end());
  }

  /** Stops serving: open connections are cut, the socket file removed. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    for (const s of this.sockets) {
      s.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.socketPath, { force: true });
  }
}
