import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import S3rver from 's3rver';
import { createStorage } from './create-storage';
import { S3BlobStore } from './s3-blob-store';
import { S3StorageConfig, createS3Client, ensureBucket, listObjects } from './s3-util';
import { describeStorageContract } from './store.contract';

// A real S3 protocol server in-process (s3rver), on a free port, with its data in a temp dir.
let server: S3rver;
let dir: string;
let endpoint: string;
let bucketSeq = 0;

const creds = { accessKey: 'S3RVER', secretKey: 'S3RVER', region: 'us-east-1' };

function configFor(bucket: string): S3StorageConfig {
  return { kind: 's3', endpoint, bucket, ...creds };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'stratum-s3rver-'));
  server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir });
  const { port } = await server.run();
  endpoint = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describeStorageContract(
  's3',
  async () => {
    const config = configFor(`stratum-test-${process.pid}-${++bucketSeq}`);
    // createStorage creates the bucket: every test starts from an empty one.
    const { blobs, repositories } = await createStorage(config);
    const client = createS3Client(config);
    return {
      blobs,
      repositories,
      tempEntries: async () => {
        const names: string[] = [];
        for await (const item of listObjects(client, config.bucket, 'tmp/')) {
          names.push(item.name ?? '');
        }
        return names;
      },
      tamper: async (digest, bytes) => {
        await client.putObject(config.bucket, `blobs/sha256/${digest.slice('sha256:'.length)}`, bytes);
      },
      quarantineEntries: async () => {
        const names: string[] = [];
        for await (const item of listObjects(client, config.bucket, 'quarantine/')) {
          names.push(item.name ?? '');
        }
        return names;
      },
      dispose: async () => undefined,
    };
  },
  // s3rver handles single PutObjects; below the 8 MiB part size an upload is one part in memory.
  { largeBytes: 4 * 1024 * 1024, assertStreaming: false },
);

describe('S3 backend specifics', () => {
  it('is idempotent about an existing bucket', async () => {
    const config = configFor(`stratum-test-${process.pid}-again`);
    await createStorage(config);
    const { blobs } = await createStorage(config);
    const res = await blobs.put(Readable.from([Buffer.from('x')]));
    expect(res.created).toBe(true);
  });

  it('streams a multipart upload holding about one part in memory, and aborts a bad one cleanly', async () => {
    const config = configFor(`stratum-test-${process.pid}-multipart`);
    const client = createS3Client(config);
    await ensureBucket(client, config.bucket, config.region);
    const partSize = 5 * 1024 * 1024;
    const store = new S3BlobStore(client, config.bucket, { partSize });
    const total = 16 * 1024 * 1024 + 123;
    const chunk = (i: number) => Buffer.alloc(Math.min(64 * 1024, total - i * 64 * 1024), i % 251);
    const count = Math.ceil(total / (64 * 1024));
    const hash = createHash('sha256');
    for (let i = 0; i < count; i++) {
      hash.update(chunk(i));
    }
    const digest = `sha256:${hash.digest('hex')}` as const;
    let produced = 0;
    const source = () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < count; i++) {
            const c = chunk(i);
            produced += c.length;
            yield c;
          }
        })(),
        { objectMode: false },
      );

    const wrong = `sha256:${'0'.repeat(64)}` as const;
    await expect(store.put(source(), { expectedDigest: wrong })).rejects.toMatchObject({
      code: 'DIGEST_INVALID',
    });
    expect(await store.has(digest)).toBe(false);

    // Each part goes out as soon as it is full: the source is never read far ahead of the network.
    produced = 0;
    const readAhead: number[] = [];
    const original = client.uploadPart.bind(client);
    const spy = jest.spyOn(client, 'uploadPart').mockImplementation((part, payload) => {
      readAhead.push(produced - part.partNumber * partSize);
      return original(part, payload);
    });
    const res = await store.put(source(), { expectedDigest: digest });
    expect(res).toEqual({ digest, size: total, created: true });
    spy.mockRestore();
    expect(readAhead).toHaveLength(4); // 3 full parts + the short last one
    expect(Math.max(...readAhead)).toBeLessThan(1024 * 1024);

    const h2 = createHash('sha256');
    let n = 0;
    for await (const c of await store.get(digest)) {
      h2.update(c as Buffer);
      n += (c as Buffer).length;
    }
    expect(n).toBe(total);
    expect(`sha256:${h2.digest('hex')}`).toBe(digest);
    const tmp: string[] = [];
    for await (const item of listObjects(client, config.bucket, 'tmp/')) {
      tmp.push(item.name ?? '');
    }
    expect(tmp).toEqual([]);
  }, 60_000);

  it('sweeps temp objects by age', async () => {
    const config = configFor(`stratum-test-${process.pid}-sweep`);
    const client = createS3Client(config);
    await ensureBucket(client, config.bucket, config.region);
    const store = new S3BlobStore(client, config.bucket);
    await client.putObject(config.bucket, 'tmp/left-by-a-crash', Buffer.from('x'));
    expect(await store.sweepTemp(3600_000)).toBe(0);
    // A cutoff in the future makes every temp object stale.
    expect(await store.sweepTemp(-60_000)).toBe(1);
    expect(await store.sweepTemp(-60_000)).toBe(0);
  });

  it('maps an unreachable endpoint to UNAVAILABLE', async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() =>
          typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')),
        );
      });
    });
    const config: S3StorageConfig = {
      ...configFor('stratum-unreachable'),
      endpoint: `http://127.0.0.1:${port}`,
    };
    await expect(createStorage(config)).rejects.toMatchObject({ name: 'StorageError', code: 'UNAVAILABLE' });
  }, 30_000);
});
