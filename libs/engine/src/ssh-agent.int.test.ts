// The worker's ssh agent against OpenSSH's own client tools: ssh-add lists the keys, and
// ssh-keygen -Y sign through the agent makes signatures the public key verifies (Ed25519, RSA
// with rsa-sha2-512, ECDSA P-256/384/521). A request it does not serve gets FAILURE; an
// oversized message ends the connection.
import { execFile, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTools } from '@stratum/testing';
import { SshAgentServer } from './ssh-agent';

let dir: string;
const KEYS = [
  ['ed25519', []],
  ['rsa', ['-b', '2048']],
  ['ecdsa', ['-b', '256']],
  ['ecdsa', ['-b', '384']],
  ['ecdsa', ['-b', '521']],
] as const;

beforeAll(() => {
  requireTools('ssh-add', 'ssh-keygen');
  dir = mkdtempSync(join(tmpdir(), 'stratum-agent-'));
  for (const [i, [type, extra]] of KEYS.entries()) {
    execFileSync('ssh-keygen', [
      '-q',
      '-t',
      type,
      ...extra,
      '-N',
      '',
      '-C',
      `key${i}`,
      '-f',
      join(dir, `k${i}`),
    ]);
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const env = (sock: string): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, SSH_AUTH_SOCK: sock });

/** Runs a client of the agent without blocking this process (which serves the agent). */
function run(cmd: string, args: string[], sock: string, input?: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: env(sock), timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(stdout),
    );
    child.stdin?.end(input ?? Buffer.alloc(0));
  });
}

it('serves the keys to ssh-add and signs with each: ssh-keygen -Y verify accepts every signature', async () => {
  const sock = join(dir, 'agent.sock');
  const agent = await SshAgentServer.listen(
    sock,
    KEYS.map((_, i) => readFileSync(join(dir, `k${i}`))),
  );
  try {
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    const listed = (await run('ssh-add', ['-L'], sock)).trim().split('\n');
    expect(listed).toHaveLength(KEYS.length);
    for (const [i] of KEYS.entries()) {
      const pub = readFileSync(join(dir, `k${i}.pub`), 'utf8')
        .trim()
        .split(' ')
        .slice(0, 2)
        .join(' ');
      expect(listed).toContainEqual(expect.stringContaining(pub));
      // Sign a file through the agent (only the public key is given to ssh-keygen).
      const msg = join(dir, `msg${i}`);
      writeFileSync(msg, `message ${i}\n`);
      const onlyPub = join(dir, `only${i}.pub`);
      writeFileSync(onlyPub, readFileSync(join(dir, `k${i}.pub`)));
      await run('ssh-keygen', ['-Y', 'sign', '-f', onlyPub, '-n', 'file', msg], sock);
      writeFileSync(join(dir, 'allowed'), `signer ${pub}\n`);
      const verified = await run(
        'ssh-keygen',
        ['-Y', 'verify', '-f', join(dir, 'allowed'), '-I', 'signer', '-n', 'file', '-s', `${msg}.sig`],
        '/nonexistent',
        readFileSync(msg),
      );
      expect(verified).toMatch(/Good "file" signature for signer/);
    }
    // A key the agent does not hold is not signed with (only its public half is on disk).
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'other')]);
    rmSync(join(dir, 'other'));
    writeFileSync(join(dir, 'other-msg'), 'x');
    await expect(
      run(
        'ssh-keygen',
        ['-Y', 'sign', '-f', join(dir, 'other.pub'), '-n', 'file', join(dir, 'other-msg')],
        sock,
      ),
    ).rejects.toThrow();
    // Removing keys is refused: the step cannot change what the agent holds.
    await expect(run('ssh-add', ['-D'], sock)).rejects.toThrow();
    expect((await run('ssh-add', ['-l'], sock)).trim().split('\n')).toHaveLength(KEYS.length);
  } finally {
    await agent.close();
  }
  expect(existsSync(sock)).toBe(false);
});

it('ends a connection that declares a message over the limit; owner and mode as asked; a path past 108 bytes', async () => {
  const deep = join(dir, 'd'.repeat(60), 'e'.repeat(60));
  mkdirSync(deep, { recursive: true });
  const sock = join(deep, 'agent2.sock');
  expect(Buffer.byteLength(sock)).toBeGreaterThan(108);
  const agent = await SshAgentServer.listen(sock, [readFileSync(join(dir, 'k0'))], {
    uid: 1234,
    gid: 4321,
    mode: 0o660,
  });
  try {
    const st = statSync(sock);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([1234, 4321, 0o660]);
    const closed = await new Promise<boolean>((resolve) => {
      const c = createConnection(sock, () => {
        const header = Buffer.alloc(5);
        header.writeUInt32BE(0x7fffffff);
        header[4] = 11;
        c.write(header);
      });
      const timer = setTimeout(() => {
        c.destroy();
        resolve(false);
      }, 5000);
      c.on('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
      c.on('error', () => undefined);
    });
    expect(closed).toBe(true);
    // The agent still serves others (reached through a short link: clients have sun_path's limit).
    const link = join(dir, 'short');
    symlinkSync(sock, link);
    expect(await run('ssh-add', ['-l'], link)).toMatch(/ED25519/);
  } finally {
    await agent.close();
  }
});

it('answers an extension request (OpenSSH 8.9+ sends session-bind first) with FAILURE, then lists the keys', async () => {
  const sock = join(dir, 'agent3.sock');
  const agent = await SshAgentServer.listen(sock, [readFileSync(join(dir, 'k0'))]);
  try {
    const name = Buffer.from('session-bind@openssh.com');
    const body = Buffer.concat([Buffer.from([27]), Buffer.alloc(4), name, Buffer.alloc(64, 7)]);
    body.writeUInt32BE(name.length, 1);
    const ext = Buffer.concat([Buffer.alloc(4), body]);
    ext.writeUInt32BE(body.length, 0);
    const ids = Buffer.from([0, 0, 0, 1, 11]);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      let got = Buffer.alloc(0);
      const c = createConnection(sock, () => {
        // Both in one write and split mid-message: the framing must not depend on chunking.
        const all = Buffer.concat([ext, ids]);
        c.write(all.subarray(0, 7));
        setTimeout(() => c.write(all.subarray(7)), 50);
      });
      c.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length >= 9 && got.length >= 5 + 4 + got.readUInt32BE(5)) {
          c.destroy();
          resolve(got);
        }
      });
      c.on('error', reject);
    });
    expect([...reply.subarray(0, 5)]).toEqual([0, 0, 0, 1, 5]); // SSH_AGENT_FAILURE
    expect(reply[9]).toBe(12); // SSH_AGENT_IDENTITIES_ANSWER
    expect(reply.readUInt32BE(10)).toBe(1); // one key
  } finally {
    await agent.close();
  }
});
