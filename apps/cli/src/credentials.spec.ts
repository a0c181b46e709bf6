import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverKey } from './auth-commands';
import { registryOf, splitTag } from './cli-context';
import { CredentialStore } from './credentials';
import { bar, ProgressBoard } from './progress-bar';

describe('CredentialStore', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-creds-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps credentials in a 0600 file in a 0700 dir, per server, whatever the umask', () => {
    const old = process.umask(0o022);
    try {
      const store = new CredentialStore(join(dir, 'stratum'));
      expect(store.get('http://a:1')).toBeNull();
      store.set('http://a:1', { username: 'u', secret: 's1' });
      store.set('reg.example:5000', { username: 'v', secret: 's2' });
      expect(statSync(join(dir, 'stratum', 'credentials.json')).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'stratum')).mode & 0o777).toBe(0o700);
      expect(new CredentialStore(join(dir, 'stratum')).get('reg.example:5000')).toEqual({
        username: 'v',
        secret: 's2',
      });
      expect(store.remove('http://a:1')).toBe(true);
      expect(store.remove('http://a:1')).toBe(false);
      expect(JSON.parse(readFileSync(join(dir, 'stratum', 'credentials.json'), 'utf8'))).toEqual({
        servers: { 'reg.example:5000': { username: 'v', secret: 's2' } },
      });
    } finally {
      process.umask(old);
    }
  });
});

describe('names', () => {
  it('serverKey: Stratum by default or by its host, else a registry host', () => {
    expect(serverKey(undefined, 'http://127.0.0.1:8080')).toEqual({
      key: 'http://127.0.0.1:8080',
      stratum: true,
    });
    expect(serverKey('127.0.0.1:8080', 'http://127.0.0.1:8080')).toEqual({
      key: 'http://127.0.0.1:8080',
      stratum: true,
    });
    expect(serverKey('https://reg.example:5000/', 'http://127.0.0.1:8080')).toEqual({
      key: 'reg.example:5000',
      stratum: false,
    });
  });

  it('registryOf and splitTag read references as docker does', () => {
    expect(registryOf('localhost:5000/a/b:1')).toBe('localhost:5000');
    expect(registryOf('reg.example/a')).toBe('reg.example');
    expect(registryOf('team/app:1')).toBeNull();
    expect(registryOf('alpine')).toBeNull();
    expect(splitTag('team/app:1')).toEqual({ repository: 'team/app', tag: '1' });
    expect(splitTag('team/app')).toEqual({ repository: 'team/app', tag: 'latest' });
    expect(splitTag('host:5000/app')).toEqual({ repository: 'host:5000/app', tag: 'latest' });
  });
});

describe('progress', () => {
  it('bar draws docker-style arrows', () => {
    expect(bar(0, 10, 10)).toBe('[>         ]');
    expect(bar(5, 10, 10)).toBe('[====>     ]');
    expect(bar(10, 10, 10)).toBe('[==========]');
  });

  it('a TTY gets lines redrawn in place; a pipe one line per status change', () => {
    const tty: string[] = [];
    const board = new ProgressBoard({ isTTY: true, columns: 200, write: (s) => tty.push(s) });
    board.update('a', 'aaaa', 'Downloading', 1, 4);
    board.update('a', 'aaaa', 'Downloading', 2, 4);
    expect(tty[1]).toBe('\x1b[1A\x1b[2Kaaaa: Downloading [===================>                    ] 2B/4B\n');
    const plain: string[] = [];
    const p = new ProgressBoard({ isTTY: false, write: (s) => plain.push(s) });
    p.update('a', 'aaaa', 'Downloading', 1, 4);
    p.update('a', 'aaaa', 'Downloading', 2, 4);
    p.update('a', 'aaaa', 'Pull complete', 4, 4);
    expect(plain).toEqual(['aaaa: Downloading\n', 'aaaa: Pull complete\n']);
  });
});
