// A build context extracted from its blob: the digests recorded while extracting stand in for
// reading the files again when a COPY's cache key is hashed, and give the same key.
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { appendFile, lstat, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsBlobStore } from '@stratum/storage';
import { BuildContext } from './build-context';
import { matchSources } from './file-copy';
import { hashSources } from './source-hash';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'stratum-context-'));
});
afterEach(() => rm(work, { recursive: true, force: true }));

it('a COPY of the context hashes to the same key from the recorded digests, without reading what it knows', async () => {
  const src = join(work, 'src');
  await mkdir(join(src, 'app', 'deep'), { recursive: true });
  await writeFile(join(src, 'Dockerfile'), 'FROM scratch\nCOPY . /src/\n');
  await writeFile(join(src, '.dockerignore'), 'ignored.txt\n');
  await writeFile(join(src, 'ignored.txt'), 'left out');
  await writeFile(join(src, 'app', 'a.txt'), 'a');
  await writeFile(join(src, 'app', 'deep', 'big.bin'), Buffer.alloc(5 << 20, 1)); // the async read path
  execFileSync('ln', [join(src, 'app', 'a.txt'), join(src, 'app', 'hard.txt')]);
  execFileSync('ln', ['-s', 'a.txt', join(src, 'app', 'link')]);
  const tarFile = join(work, 'context.tar');
  execFileSync('tar', ['-cf', tarFile, '-C', src, '.']);
  const blobs = new FsBlobStore(join(work, 'store'));
  const { digest } = await blobs.put(createReadStream(tarFile));
  const dir = join(work, 'ctx');
  await mkdir(dir);
  const context = new BuildContext(blobs, digest, dir, 'Dockerfile', () => undefined);
  await context.materialize();

  const sources = await matchSources(dir, ['.'], 2, 'COPY');
  const asked: string[] = [];
  const answered: string[] = [];
  const known = (host: string, st: Parameters<typeof context.knownDigest>[1]): string | undefined => {
    asked.push(host);
    const d = context.knownDigest(host, st);
    if (d !== undefined) {
      answered.push(host);
    }
    return d;
  };
  const withKnown = await hashSources(sources, undefined, known);
  expect(withKnown).toBe(await hashSources(sources));
  // every regular file of the context was known (the ignored one is gone), none was read
  expect(answered.sort()).toEqual(
    ['Dockerfile', '.dockerignore', 'app/a.txt', 'app/hard.txt', 'app/deep/big.bin']
      .map((p) => join(dir, p))
      .sort(),
  );
  expect(asked.sort()).toEqual(answered.sort());

  // a file changed after the extraction is read again, so the key follows its content
  await appendFile(join(dir, 'app', 'a.txt'), '!');
  expect((await lstat(join(dir, 'app', 'a.txt'))).size).toBe(2);
  const changed = await hashSources(
    sources.map((s) => s),
    undefined,
    context.knownDigest,
  );
  expect(changed).not.toBe(withKnown);
  expect(changed).toBe(await hashSources(await matchSources(dir, ['.'], 2, 'COPY')));
});
