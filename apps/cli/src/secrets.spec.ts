import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSecrets, parseSsh } from './main';

describe('parseSecrets (stratum build --secret, as docker build)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-cli-secret-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads src= files, env= variables and a bare id as the variable of that name', () => {
    writeFileSync(join(dir, 'npmrc'), 'file-value\n');
    const s = parseSecrets([`id=npmrc,src=${join(dir, 'npmrc')}`, 'id=tok,env=TOKEN', 'id=GH_TOKEN'], {
      TOKEN: 'env-value',
      GH_TOKEN: 'gh',
    });
    expect([...s].map(([k, v]) => [k, v.toString()])).toEqual([
      ['npmrc', 'file-value\n'],
      ['tok', 'env-value'],
      ['GH_TOKEN', 'gh'],
    ]);
  });

  it('fails clearly: no id, an unset variable, an unknown field, a file over 500 KiB', () => {
    expect(() => parseSecrets(['src=/x'], {})).toThrow(/id= is required/);
    expect(() => parseSecrets(['id=tok,env=NOPE'], {})).toThrow(/NOPE is not set/);
    expect(() => parseSecrets(['id=a,colour=red'], {})).toThrow(/unknown field "colour"/);
    writeFileSync(join(dir, 'big'), Buffer.alloc(500 * 1024 + 1));
    expect(() => parseSecrets([`id=big,src=${join(dir, 'big')}`], {})).toThrow(/larger than 512000 bytes/);
  });
});

describe('parseSsh (stratum build --ssh, as docker buildx build --ssh)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-cli-ssh-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads id=keyfile[,keyfile], repeated ids add keys', () => {
    writeFileSync(join(dir, 'a'), 'key-a');
    writeFileSync(join(dir, 'b'), 'key-b');
    const s = parseSsh([
      `default=${join(dir, 'a')}`,
      `deploy=${join(dir, 'a')},${join(dir, 'b')}`,
      `default=${join(dir, 'b')}`,
    ]);
    expect([...s.keys()]).toEqual(['default', 'deploy']);
    expect(s.get('default')?.map(String)).toEqual(['key-a', 'key-b']);
    expect(s.get('deploy')?.map(String)).toEqual(['key-a', 'key-b']);
  });

  it('refuses an id alone (agent forwarding), a missing file, a directory, naming the id', () => {
    expect(() => parseSsh(['default'])).toThrow(
      /--ssh default: give a private key file.*ssh agent \(SSH_AUTH_SOCK\) is not supported: the build runs on a worker, and an agent never gives out its keys/,
    );
    expect(() => parseSsh([`x=${join(dir, 'none')}`])).toThrow(/--ssh x: cannot read/);
    expect(() => parseSsh([`x=${dir}`])).toThrow(/--ssh x: .* is not a private key file/);
    expect(() => parseSsh(['=a'])).toThrow(/expected ID=KEYFILE/);
  });

  it('refuses an agent socket (--ssh default=$SSH_AUTH_SOCK), saying why and what to give', async () => {
    const sock = join(dir, 'agent.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      expect(() => parseSsh([`default=${sock}`])).toThrow(
        /--ssh default: .*agent\.sock is an agent socket, give a private key file .*an agent never gives out its keys/,
      );
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
