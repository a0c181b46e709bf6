// BuildSecretStore against a real redis-server: values sealed at rest, a TTL, limits, no key.
import { Redis } from 'ioredis';
import { utils } from 'ssh2';
import { RedisServerHandle, startRedisServer } from '@stratum/testing';
import { BuildSecretStore, MAX_BUILD_SECRET_BYTES } from './build-secret-store';

let server: RedisServerHandle;
let redis: Redis;

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url);
});

afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

it('seals the values (no plain or base64 bytes in Redis), with a TTL; get and delete', async () => {
  const store = new BuildSecretStore(redis, 'auth-secret-for-test', 60);
  const id = await store.put(new Map([['npmrc', Buffer.from('plain-secret-value-42')]]));
  const raw = (await redis.get(`stratum:build-secrets:${id}`)) as string;
  expect(raw).toMatch(/^gcm:/);
  expect(raw).not.toContain('plain-secret-value-42');
  expect(raw).not.toContain(Buffer.from('plain-secret-value-42').toString('base64'));
  const ttl = await redis.ttl(`stratum:build-secrets:${id}`);
  expect(ttl).toBeGreaterThan(0);
  expect(ttl).toBeLessThanOrEqual(60);
  expect((await store.get(id))?.secrets.get('npmrc')?.toString()).toBe('plain-secret-value-42');
  // Another AUTH_SECRET cannot open it.
  expect(await new BuildSecretStore(redis, 'another-secret').get(id)).toBeNull();
  await store.delete(id);
  expect(await store.exists(id)).toBe(false);
});

it('refuses: no AUTH_SECRET (naming it), a value over 500 KiB, a bad id', async () => {
  await expect(
    new BuildSecretStore(redis, null).put(new Map([['a', Buffer.from('x')]])),
  ).rejects.toMatchObject({
    code: 'BAD_REQUEST',
    message: expect.stringMatching(/AUTH_SECRET/),
  });
  const store = new BuildSecretStore(redis, 'k');
  await expect(store.put(new Map([['big', Buffer.alloc(MAX_BUILD_SECRET_BYTES + 1)]]))).rejects.toMatchObject(
    {
      code: 'SECRET_TOO_LARGE',
    },
  );
  await expect(store.put(new Map([['../x', Buffer.from('x')]]))).rejects.toMatchObject({
    code: 'BAD_REQUEST',
  });
});

it('ssh keys: sealed beside the secrets and read back; encrypted, public or garbage keys refused naming the id', async () => {
  const store = new BuildSecretStore(redis, 'k', 60);
  const pair = utils.generateKeyPairSync('ed25519');
  const id = await store.put(new Map(), new Map([['default', [Buffer.from(pair.private)]]]));
  const raw = (await redis.get(`stratum:build-secrets:${id}`)) as string;
  expect(raw).not.toContain(pair.private.split('\n')[1]);
  const bundle = await store.get(id);
  expect(bundle?.secrets.size).toBe(0);
  expect(bundle?.ssh.get('default')?.[0].toString()).toBe(pair.private);
  const locked = utils.generateKeyPairSync('ed25519', { passphrase: 'pw', cipher: 'aes256-ctr', rounds: 16 });
  await expect(
    store.put(new Map(), new Map([['deploy', [Buffer.from(locked.private)]]])),
  ).rejects.toMatchObject({
    code: 'BAD_REQUEST',
    message: expect.stringMatching(/"deploy".*passphrase-protected/),
  });
  await expect(store.put(new Map(), new Map([['deploy', [Buffer.from(pair.public)]]]))).rejects.toMatchObject(
    {
      message: expect.stringMatching(/"deploy" is a public key/),
    },
  );
  await expect(store.put(new Map(), new Map([['deploy', [Buffer.from('nope')]]]))).rejects.toMatchObject({
    message: expect.stringMatching(/"deploy" cannot be used: it is not an ssh private key/),
  });
  await expect(store.put(new Map(), new Map([['a/b', [Buffer.from(pair.private)]]]))).rejects.toMatchObject({
    message: expect.stringMatching(/invalid ssh id/),
  });
});
