// BuildSecretStore against a real redis-server: values sealed at rest, a TTL, limits, no key.
import { Redis } from 'ioredis';
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
  expect((await store.get(id))?.get('npmrc')?.toString()).toBe('plain-secret-value-42');
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
