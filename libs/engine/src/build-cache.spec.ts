import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDockerfile } from '@stratum/dockerfile';
import { MemoryBuildCacheIndex, stableJson, stepCacheKey } from './build-cache';
import { canonicalInstruction } from './build-engine';
import { matchSources } from './file-copy';
import { hashSources } from './source-hash';

describe('stableJson', () => {
  it('sorts object keys at every depth and drops undefined members', () => {
    expect(stableJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } })).toBe(
      '{"a":{"d":[1,{"x":1,"y":2}]},"b":1}',
    );
    expect(stableJson({ a: 1, b: 2 })).toBe(stableJson({ b: 2, a: 1 }));
  });
});

describe('stepCacheKey', () => {
  const base = { parent: 'scratch', instruction: { kind: 'RUN', cmd: 'make' }, inputs: { env: { A: '1' } } };

  it('is a sha256 hex digest, equal for equal inputs', () => {
    expect(stepCacheKey(base)).toMatch(/^[0-9a-f]{64}$/);
    expect(stepCacheKey({ ...base, inputs: { env: { A: '1' } } })).toBe(stepCacheKey(base));
  });

  it('changes with the parent, the instruction and the inputs', () => {
    const k = stepCacheKey(base);
    expect(stepCacheKey({ ...base, parent: 'image:sha256:00' })).not.toBe(k);
    expect(stepCacheKey({ ...base, instruction: { kind: 'RUN', cmd: 'make all' } })).not.toBe(k);
    expect(stepCacheKey({ ...base, inputs: { env: { A: '2' } } })).not.toBe(k);
  });

  it('does not depend on where the instruction sits in the Dockerfile', () => {
    const a = parseDockerfile('FROM scratch\nRUN echo hi\n').stages[0].instructions[0];
    const b = parseDockerfile('FROM scratch\n\n# comment\n\nrun   echo hi\n').stages[0].instructions[0];
    expect(a.startLine).not.toBe(b.startLine);
    expect(stepCacheKey({ parent: 'p', instruction: canonicalInstruction(a) })).toBe(
      stepCacheKey({ parent: 'p', instruction: canonicalInstruction(b) }),
    );
  });
});

describe('MemoryBuildCacheIndex', () => {
  it('stores, returns and forgets records', async () => {
    const index = new MemoryBuildCacheIndex();
    const rec = {
      version: 1 as const,
      layer: null,
      history: { created_by: 'ENV A=1', empty_layer: true },
      recordedAt: 'x',
    };
    expect(await index.get('k')).toBeNull();
    await index.put('k', rec);
    expect(await index.get('k')).toEqual(rec);
    await index.delete('k');
    expect(await index.get('k')).toBeNull();
  });
});

describe('COPY source digest (hashSources of matchSources)', () => {
  let ctx: string;
  const digest = async (...patterns: string[]): Promise<string> =>
    hashSources(await matchSources(ctx, patterns, 1));

  beforeEach(async () => {
    ctx = await mkdtemp(join(tmpdir(), 'stratum-build-key-'));
    await mkdir(join(ctx, 'src/lib'), { recursive: true });
    await writeFile(join(ctx, 'src/main.c'), 'int main() {}\n');
    await writeFile(join(ctx, 'src/lib/util.c'), 'void f() {}\n');
    await writeFile(join(ctx, 'README'), 'readme\n');
    await writeFile(join(ctx, 'app.conf'), 'a=1\n');
  });

  afterEach(async () => {
    await rm(ctx, { recursive: true, force: true });
  });

  it('changes when a copied file changes content', async () => {
    const before = await digest('src/');
    await writeFile(join(ctx, 'src/lib/util.c'), 'void f() { return; }\n');
    expect(await digest('src/')).not.toBe(before);
  });

  it('changes when a copied file changes mode', async () => {
    const before = await digest('app.conf');
    await chmod(join(ctx, 'app.conf'), 0o600);
    expect(await digest('app.conf')).not.toBe(before);
  });

  it('changes when a file is added to or removed from a copied directory', async () => {
    const before = await digest('src');
    await writeFile(join(ctx, 'src/new.h'), '');
    const added = await digest('src');
    expect(added).not.toBe(before);
    await rm(join(ctx, 'src/new.h'));
    expect(await digest('src')).toBe(before);
  });

  it('changes when a file is renamed (same content)', async () => {
    const before = await digest('src');
    await rm(join(ctx, 'src/main.c'));
    await writeFile(join(ctx, 'src/main2.c'), 'int main() {}\n');
    expect(await digest('src')).not.toBe(before);
  });

  it('changes when a copied symlink points elsewhere', async () => {
    await symlink('main.c', join(ctx, 'src/link'));
    const before = await digest('src');
    await rm(join(ctx, 'src/link'));
    await symlink('lib/util.c', join(ctx, 'src/link'));
    expect(await digest('src')).not.toBe(before);
  });

  it('does not change when files it does not read change', async () => {
    const before = await digest('src/', 'app.conf');
    await writeFile(join(ctx, 'README'), 'something else entirely\n');
    await writeFile(join(ctx, 'unrelated.txt'), 'new\n');
    await chmod(join(ctx, 'README'), 0o700);
    expect(await digest('src/', 'app.conf')).toBe(before);
  });

  it('follows wildcards to exactly the files they match', async () => {
    const before = await digest('*.conf');
    await writeFile(join(ctx, 'README'), 'changed\n');
    expect(await digest('*.conf')).toBe(before);
    await writeFile(join(ctx, 'other.conf'), 'b=2\n');
    expect(await digest('*.conf')).not.toBe(before);
  });

  it('ignores modification times, as BuildKit does', async () => {
    const before = await digest('src');
    await utimes(join(ctx, 'src/main.c'), new Date(1_000_000), new Date(1_000_000));
    expect(await digest('src')).toBe(before);
  });

  it('fails with the line when a source is missing', async () => {
    await expect(matchSources(ctx, ['nope.txt'], 7)).rejects.toMatchObject({
      name: 'BuildError',
      line: 7,
      message: expect.stringMatching(/Dockerfile:7: .*nope\.txt/),
    });
    await expect(matchSources(ctx, ['*.nothing'], 8)).rejects.toMatchObject({ line: 8 });
  });
});
