import { createHash } from 'node:crypto';
import { parseManifest, ParsedManifest } from '@stratum/oci';
import { BlobDigest } from '@stratum/storage';
import { IndexLimits, walkManifests } from './index-walk';
import { RegistryError } from './registry-error';

const sha = (s: string): BlobDigest => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

/** An in-memory manifest store that counts reads. */
class Store {
  readonly docs = new Map<string, ParsedManifest>();
  reads = 0;

  add(json: string): BlobDigest {
    const parsed = parseManifest(json);
    if (!parsed.ok) {
      throw new Error(parsed.message);
    }
    this.docs.set(parsed.digest, parsed);
    return parsed.digest;
  }

  image(name: string): BlobDigest {
    const config = sha(`config ${name}`);
    return this.add(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 2 },
        layers: [],
        annotations: { name },
      }),
    );
  }

  index(children: BlobDigest[], name = ''): BlobDigest {
    return this.add(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: children.map((digest) => ({ mediaType: OCI_INDEX, digest, size: 1 })),
        annotations: { name },
      }),
    );
  }

  read = (d: BlobDigest): Promise<ParsedManifest | null> => {
    this.reads++;
    return Promise.resolve(this.docs.get(d) ?? null);
  };
}

const limits: IndexLimits = { maxDepth: 4, maxEntries: 50, maxManifests: 200 };

/** The limit a walk failed on (its error is MANIFEST_INVALID and its message names the limit). */
async function limitOf(p: Promise<unknown>): Promise<string> {
  const err: unknown = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RegistryError);
  const e = err as RegistryError;
  const limit = (e.detail as { limit: string }).limit;
  expect(e.code).toBe('MANIFEST_INVALID');
  expect(e.message).toContain(`over the limit ${limit}=`);
  return limit;
}

describe('walkManifests', () => {
  it('puts every manifest after the ones it names, even a child two siblings share', async () => {
    const s = new Store();
    const x = s.image('x');
    const y = s.index([x], 'y');
    const root = s.index([y, x], 'root'); // x is named by root and, first, through y
    expect(await walkManifests(root, s.read, { limits })).toEqual([x, y, root]);
    const other = s.index([x, y], 'other');
    expect(await walkManifests(other, s.read, { limits })).toEqual([x, y, other]);
  });

  it('reads each distinct manifest once: 40 indexes naming the same 40 images is 81 reads, not 1,600', async () => {
    const s = new Store();
    const leaves = Array.from({ length: 40 }, (_, i) => s.image(`leaf ${i}`));
    const middles = Array.from({ length: 40 }, (_, i) => s.index(leaves, `middle ${i}`));
    const root = s.index(middles, 'root');
    const order = await walkManifests(root, s.read, { limits });
    expect(order).toHaveLength(81);
    expect(new Set(order).size).toBe(81);
    expect(s.reads).toBe(81);
    expect(order[order.length - 1]).toBe(root);
  });

  it('fails naming maxEntries on an index with too many entries, before reading any of them', async () => {
    const s = new Store();
    const leaves = Array.from({ length: 51 }, (_, i) => s.image(`leaf ${i}`));
    const root = s.index(leaves);
    expect(await limitOf(walkManifests(root, s.read, { limits }))).toBe('maxEntries');
    expect(s.reads).toBe(1);
  });

  it('fails naming maxDepth on a chain of nested indexes', async () => {
    const s = new Store();
    let d = s.image('bottom');
    for (let i = 0; i < 3; i++) {
      d = s.index([d], `level ${i}`);
    }
    expect(await walkManifests(d, s.read, { limits })).toHaveLength(4); // 4 levels: allowed
    const deeper = s.index([d], 'one more');
    expect(await limitOf(walkManifests(deeper, s.read, { limits }))).toBe('maxDepth');
  });

  it('fails naming maxManifests once more distinct manifests are reached, after at most that many reads', async () => {
    const s = new Store();
    const middles = Array.from({ length: 50 }, (_, i) =>
      s.index(
        Array.from({ length: 5 }, (_, j) => s.image(`leaf ${i}.${j}`)),
        `middle ${i}`,
      ),
    );
    const root = s.index(middles);
    expect(await limitOf(walkManifests(root, s.read, { limits }))).toBe('maxManifests');
    expect(s.reads).toBeLessThanOrEqual(limits.maxManifests);
  });

  it('stops when its signal is aborted', async () => {
    const s = new Store();
    const root = s.index([s.image('a'), s.image('b')]);
    const ac = new AbortController();
    const read = async (d: BlobDigest) => {
      ac.abort(new Error('cancelled'));
      return s.read(d);
    };
    await expect(walkManifests(root, read, { limits, signal: ac.signal })).rejects.toThrow('cancelled');
    expect(s.reads).toBe(1);
  });
});
