// COPY/ADD --exclude, COPY --parents, COPY --link, ADD of a small gzip archive, ONBUILD
// triggers that only fail where they run, and build checks in the log: BuildEngine against real
// overlayfs, a filesystem blob store and a real redis-server.
//
// Fixtures are the Dockerfile reference's own examples
// (https://docs.docker.com/reference/dockerfile/#copy---exclude, #copy---parents, #copy---link)
// and BuildKit's testExcludedFilesOnCopy tree. Debian's Buildah (1.28) has neither --exclude nor
// --parents, so these follow the reference and BuildKit rather than a Buildah comparison.
import { lstat, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { BuildEngine, isUserBuildError } from '@stratum/engine';
import { Digest } from '@stratum/contracts';
import { FsBlobStore } from '@stratum/storage';
import {
  BuildahStore,
  buildWithEngine,
  contextTar,
  differences,
  EngineBuildOptions,
  EngineBuildResult,
  layoutFromStore,
  EngineTestBed,
  startEngineTestBed,
  tree as fileTree,
  umociUnpack,
  unpackImage,
  writeTree,
} from '@stratum/testing';

jest.setTimeout(120_000);

let bed: EngineTestBed;
let work: string;
let blobs: FsBlobStore;
let engine: BuildEngine;

beforeAll(async () => {
  bed = await startEngineTestBed('copy-flags');
  ({ work, blobs } = bed);
  engine = bed.engine();
});

afterAll(async () => {
  const mounts = bed?.mounts('overlay');
  await bed?.stop();
  expect(mounts).toEqual([]);
});

const build = (
  files: Record<string, string | Buffer>,
  opts: EngineBuildOptions = {},
): Promise<EngineBuildResult> => buildWithEngine(engine, blobs, files, opts);

const unpack = (digest: Digest): Promise<string> => unpackImage(engine, blobs, digest, work);

/** Every file below `dir` (relative paths, sorted), `path=content` for regular files. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) {
        out.push(`${p}/`);
        await walk(p);
      } else {
        out.push(`${p}=${await readFile(join(dir, p), 'utf8')}`);
      }
    }
  };
  await walk('');
  return out.sort();
}

const statuses = (r: EngineBuildResult): string[] => r.steps.map((s) => s.status);

/** BuildKit's testExcludedFilesOnCopy context. */
const excludeTree = {
  'dir1/file-101.png': '2',
  'dir1/file-102.txt': '3',
  'dir1/file-103.jpeg': '4',
  'dir2/file-201.pdf': '6',
  'dir2/file-202.jpeg': '7',
  'dir2/file-203.png': '8',
  'dir3/file-301.mp3': '9',
  'dir3/file-302.mpeg': '10',
};

describe('COPY/ADD --exclude', () => {
  it("BuildKit's testExcludedFilesOnCopy: from the context and with --from, files and wildcards", async () => {
    const stages = (from: string): string =>
      [
        'FROM scratch AS builder1',
        `COPY ${from}--exclude=*/*.png --exclude=*/*.jpeg . /1`,
        'FROM scratch AS builder2',
        `COPY ${from}--exclude=*/*.pdf --exclude=*/*.txt . /2`,
        'FROM scratch AS builder3',
        `COPY ${from}--exclude=*.mp3 dir3/ /3/`,
        'FROM scratch AS builder4',
        `COPY ${from}--exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/`,
        'FROM scratch AS builder5',
        `COPY ${from}--exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5`,
        'FROM scratch AS builder6',
        `COPY ${from}--exclude=* dir* /6`,
        'FROM scratch',
        ...[1, 2, 3, 4, 5, 6].map((n) => `COPY --from=builder${n} / /builder${n}`),
      ].join('\n');
    const expected = [
      'builder1/',
      'builder1/1/',
      'builder1/1/dir1/',
      'builder1/1/dir1/file-102.txt=3',
      'builder1/1/dir2/',
      'builder1/1/dir2/file-201.pdf=6',
      'builder1/1/dir3/',
      'builder1/1/dir3/file-301.mp3=9',
      'builder1/1/dir3/file-302.mpeg=10',
      'builder2/',
      'builder2/2/',
      'builder2/2/dir1/',
      'builder2/2/dir1/file-101.png=2',
      'builder2/2/dir1/file-103.jpeg=4',
      'builder2/2/dir2/',
      'builder2/2/dir2/file-202.jpeg=7',
      'builder2/2/dir2/file-203.png=8',
      'builder2/2/dir3/',
      'builder2/2/dir3/file-301.mp3=9',
      'builder2/2/dir3/file-302.mpeg=10',
      'builder3/',
      'builder3/3/',
      'builder3/3/file-302.mpeg=10',
      'builder4/',
      'builder4/4/',
      'builder4/4/file-302.mpeg=10',
      'builder5/',
      'builder5/5/',
      'builder5/5/file-102.txt=3',
      // all excluded: the destination is there, empty (BuildKit asserts the same)
      'builder6/',
      'builder6/6/',
    ];
    const ctx = await build({ Dockerfile: stages(''), ...excludeTree });
    const ctxTree = (await tree(await unpack(ctx.imageDigest))).filter((p) => !p.startsWith('Dockerfile'));
    // `COPY . /1` also copies the Dockerfile: left out of the comparison.
    expect(ctxTree.filter((p) => !p.includes('/Dockerfile'))).toEqual(expected);

    const viaFrom = ['FROM scratch AS base', 'COPY . /', stages('--from=base ')].join('\n');
    const fromBuild = await build({ Dockerfile: viaFrom, ...excludeTree });
    const fromTree = (await tree(await unpack(fromBuild.imageDigest))).filter(
      (p) => !p.includes('Dockerfile'),
    );
    expect(fromTree).toEqual(expected);
  });

  it('the reference example: hom* without *.txt and *.md; `**` and `!` exceptions', async () => {
    const r = await build({
      Dockerfile: [
        'FROM scratch',
        'COPY --exclude=*.txt --exclude=*.md hom* /mydir/',
        'COPY --exclude=**/*.log --exclude=!keep/** logs /logs/',
      ].join('\n'),
      'home/a.txt': 'x',
      'home/b.md': 'x',
      'home/c.go': 'c',
      'homer/d.go': 'd',
      'logs/a.log': 'x',
      'logs/deep/b.log': 'x',
      'logs/deep/c.txt': 'c',
      'logs/keep/k.log': 'k',
    });
    expect(await tree(await unpack(r.imageDigest))).toEqual([
      'logs/',
      'logs/deep/',
      'logs/deep/c.txt=c',
      'logs/keep/',
      'logs/keep/k.log=k',
      'mydir/',
      'mydir/c.go=c',
      'mydir/d.go=d',
    ]);
  });

  it('excluded files are not part of the cache key', async () => {
    const files = (log: string, src: string): Record<string, string> => ({
      Dockerfile: 'FROM scratch\nCOPY --exclude=*.log app /app/\n',
      'app/main.go': src,
      'app/debug.log': log,
    });
    const first = await build(files('one', 'package main'));
    expect(statuses(first)).toEqual(['done']);
    const logOnly = await build(files('two', 'package main'));
    expect(statuses(logOnly)).toEqual(['cached']);
    expect(logOnly.imageDigest).toBe(first.imageDigest);
    const source = await build(files('two', 'package main // changed'));
    expect(statuses(source)).toEqual(['done']);
    expect(await tree(await unpack(source.imageDigest))).toEqual([
      'app/',
      'app/main.go=package main // changed',
    ]);
  });
});

describe('COPY --parents', () => {
  it('the reference examples: parents kept, and only after the /./ pivot', async () => {
    const r = await build({
      Dockerfile: [
        'FROM scratch',
        'COPY ./x/a.txt ./y/a.txt /no_parents/',
        'COPY --parents ./x/a.txt ./y/a.txt /parents/',
        'COPY --parents ./x/./y/*.txt /pivot/',
        'COPY --parents packages/*/package.json /app/',
      ].join('\n'),
      'x/a.txt': 'xa',
      'y/a.txt': 'ya',
      'x/y/a.txt': 'xya',
      'x/y/b.txt': 'xyb',
      'packages/foo/package.json': 'foo',
      'packages/foo/index.js': 'no',
      'packages/bar/package.json': 'bar',
    });
    expect(await tree(await unpack(r.imageDigest))).toEqual([
      'app/',
      'app/packages/',
      'app/packages/bar/',
      'app/packages/bar/package.json=bar',
      'app/packages/foo/',
      'app/packages/foo/package.json=foo',
      // BuildKit silently overwrites the name clash without --parents: the last source wins
      'no_parents/',
      'no_parents/a.txt=ya',
      'parents/',
      'parents/x/',
      'parents/x/a.txt=xa',
      'parents/y/',
      'parents/y/a.txt=ya',
      'pivot/',
      'pivot/y/',
      'pivot/y/a.txt=xya',
      'pivot/y/b.txt=xyb',
    ]);
  });

  it('a directory keeps its parents; --exclude applies below the pivot; --from works too', async () => {
    const r = await build({
      Dockerfile: [
        'FROM scratch AS src',
        'COPY src/ /src/',
        'FROM scratch',
        'COPY --parents --exclude=**/*.tmp src/./lib/deep /out/',
        'COPY --from=src --parents /src/./lib/deep/*.c /from/',
      ].join('\n'),
      'src/lib/deep/a.c': 'a',
      'src/lib/deep/b.tmp': 'b',
      'src/lib/deep/inner/c.c': 'c',
    });
    expect(await tree(await unpack(r.imageDigest))).toEqual([
      'from/',
      'from/lib/',
      'from/lib/deep/',
      'from/lib/deep/a.c=a',
      'out/',
      'out/lib/',
      'out/lib/deep/',
      'out/lib/deep/a.c=a',
      'out/lib/deep/inner/',
      'out/lib/deep/inner/c.c=c',
    ]);
  });
  it("parent directories take their source directories' modes (as BuildKit's copier), not 0755", async () => {
    const r = await build({
      Dockerfile: [
        'FROM scratch AS src',
        'COPY --chmod=0750 src/ /src/',
        'FROM scratch',
        'COPY --from=src --parents /src/./lib/deep/a.c /from/',
      ].join('\n'),
      'src/lib/deep/a.c': 'a',
    });
    const root = await unpack(r.imageDigest);
    const mode = async (p: string): Promise<number> => (await lstat(join(root, p))).mode & 0o7777;
    expect(await mode('from/lib')).toBe(0o750);
    expect(await mode('from/lib/deep')).toBe(0o750);
    expect(await mode('from')).toBe(0o755); // the destination itself is made as any COPY makes it
  });
});

describe('COPY --link', () => {
  const files = (base: string): Record<string, string> => ({
    Dockerfile: [
      'FROM scratch AS base',
      'COPY base.txt /base.txt',
      'FROM base',
      'COPY --link app/ /app/',
      'COPY after.txt /after.txt',
    ].join('\n'),
    'base.txt': base,
    'app/main.txt': 'main',
    'after.txt': 'after',
  });

  it('a rebuild after only the base changed reuses the --link layer (same digest); later steps rebuild', async () => {
    const first = await build(files('base one'));
    const second = await build(files('base two'));
    // base COPY changed; the --link COPY is a hit; the step after it builds on the new base
    expect(statuses(second)).toEqual(['done', 'cached', 'done']);
    const a = await engine.images.load(null, first.imageDigest);
    const b = await engine.images.load(null, second.imageDigest);
    expect(b.layers[0]?.digest).not.toBe(a.layers[0]?.digest);
    expect(b.layers[1]?.digest).toBe(a.layers[1]?.digest);
    expect(await tree(await unpack(second.imageDigest))).toEqual([
      'after.txt=after',
      'app/',
      'app/main.txt=main',
      'base.txt=base two',
    ]);
  });

  it('--chown by name is resolved against the base; the layer is still reused when the base changes', async () => {
    const chowned = (base: string): Record<string, string> => ({
      Dockerfile: [
        'FROM scratch AS base',
        'COPY passwd /etc/passwd',
        'COPY group /etc/group',
        'COPY base.txt /base.txt',
        'FROM base',
        'COPY --link --chown=app:staff app/ /app/',
      ].join('\n'),
      passwd: 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n',
      group: 'root:x:0:\nstaff:x:50:\n',
      'base.txt': base,
      'app/main.txt': 'main',
    });
    const first = await build(chowned('chown one'));
    const second = await build(chowned('chown two'));
    expect(statuses(second)).toEqual(['cached', 'cached', 'done', 'cached']);
    const a = await engine.images.load(null, first.imageDigest);
    const b = await engine.images.load(null, second.imageDigest);
    expect(b.layers[3]?.digest).toBe(a.layers[3]?.digest);
    const st = await lstat(join(await unpack(second.imageDigest), 'app/main.txt'));
    expect([st.uid, st.gid]).toEqual([1234, 50]);
  });

  it('without --link the same change rebuilds the COPY', async () => {
    const plain = (base: string): Record<string, string> => ({
      ...files(base),
      Dockerfile: files(base).Dockerfile.replace('COPY --link', 'COPY'),
    });
    await build(plain('plain one'));
    expect(statuses(await build(plain('plain two')))).toEqual(['done', 'done', 'done']);
  });
});

describe('ADD of a local archive', () => {
  it('unpacks a gzip archive under 512 bytes (the compression is sniffed before the tar size)', async () => {
    const small = gzipSync(await contextTar({ 'hello.txt': 'hi' }));
    expect(small.length).toBeLessThan(512);
    const r = await build({ Dockerfile: 'FROM scratch\nADD layer.tar.gz /added/\n', 'layer.tar.gz': small });
    expect(await tree(await unpack(r.imageDigest))).toEqual(['added/', 'added/hello.txt=hi']);
  });

  it("gives the tree Debian's buildah gives for the same small archive (types, modes, owners, contents)", async () => {
    const files = {
      Dockerfile: 'FROM scratch\nADD layer.tar.gz /added/\n',
      'layer.tar.gz': gzipSync(await contextTar({ 'hello.txt': 'hi', 'sub/x': 'x' })),
    };
    const r = await build(files);
    const context = writeTree(files);
    const buildah = new BuildahStore(join(work, 'buildah'));
    try {
      const theirs = buildah.build(context, 'small-gzip');
      const oursLayout = join(work, 'ours-small-gzip');
      await layoutFromStore(join(work, 'store'), r.imageDigest, oursLayout);
      const a = await umociUnpack(oursLayout);
      const b = await umociUnpack(theirs.layout);
      expect(fileTree(b.rootfs).has('/added/hello.txt')).toBe(true);
      expect(differences(fileTree(a.rootfs), fileTree(b.rootfs))).toEqual([]);
    } finally {
      buildah.clean();
      await rm(context, { recursive: true, force: true });
    }
  });
});

describe('ONBUILD triggers and build checks', () => {
  it('a trigger with bad flags is kept, and fails only the child build that runs it', async () => {
    const parent = await build(
      { Dockerfile: 'FROM scratch\nONBUILD COPY --bogus=1 a b\nCOPY a /a\n', a: 'a' },
      { tags: ['it/onbuild-parent:1'] },
    );
    expect(statuses(parent)).toEqual(['done', 'done']);
    const err: unknown = await build({ Dockerfile: 'FROM it/onbuild-parent:1\nCOPY a /b\n', a: 'a' }).catch(
      (x: unknown) => x,
    );
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toBe(
      'Dockerfile:1: ONBUILD trigger of the base image "COPY --bogus=1 a b": unknown flag: bogus (allowed: --chown, --chmod, --link, --exclude, --from, --parents)',
    );
  });

  it('UndefinedVar knows the environment of a base image in this registry', async () => {
    await build(
      { Dockerfile: 'FROM scratch\nENV APP_HOME=/srv\nCOPY a /a\n', a: 'a' },
      { tags: ['it/env-base:1'] },
    );
    const r = await build({ Dockerfile: 'FROM it/env-base:1\nCOPY a $APP_HOME/a\nCOPY a $NOPE/b\n', a: 'a' });
    expect(r.logs).toContain("UndefinedVar: Usage of undefined variable '$NOPE' (line 3)");
    expect(r.logs).not.toContain('$APP_HOME');
  });

  it("check warnings head the build log; # check=error=true fails the build with BuildKit's text", async () => {
    const r = await build({ Dockerfile: 'FROM scratch AS Base\nCOPY a /a\nCMD echo hi\n', a: 'a' });
    expect(r.logs).toContain(
      [
        '2 warnings found:',
        " - StageNameCasing: Stage name 'Base' should be lowercase (line 1)",
        ' - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)',
      ].join('\n'),
    );
    const err: unknown = await build({
      Dockerfile: '# check=skip=StageNameCasing;error=true\nFROM scratch AS Base\nCMD echo hi\n',
    }).catch((x: unknown) => x);
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toBe('lint violation found for rules: JSONArgsRecommended');
    // the build arg overrides the directive, as BuildKit's BUILDKIT_DOCKERFILE_CHECK
    const ok = await build(
      { Dockerfile: '# check=error=true\nFROM scratch\nCMD echo hi\n' },
      { buildArgs: { BUILDKIT_DOCKERFILE_CHECK: 'skip=JSONArgsRecommended' } },
    );
    expect(ok.logs).not.toContain('warning');
  });
});
