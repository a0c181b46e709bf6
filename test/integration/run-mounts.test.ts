// RUN --mount of every type against real runc, overlayfs, a filesystem blob store and a real
// redis-server (the step cache index): what the step sees, what reaches its layer (nothing of
// a mount, not even its mountpoint), the step cache, cache sharing between concurrent builds,
// secrets (file, env, masking, size, required) and bad input (with lines, nothing left mounted).
import { execFileSync, spawnSync } from 'node:child_process';
import { lstat, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildEngine, isUserBuildError } from '@stratum/engine';
import { Digest } from '@stratum/contracts';
import { applyLayer } from '@stratum/layers';
import { BlobDigest, FsBlobStore } from '@stratum/storage';
import {
  buildWithEngine,
  busyboxContext,
  EngineBuildResult,
  EngineTestBed,
  requireTools,
  startEngineTestBed,
  unpackImage,
  writeTree,
} from '@stratum/testing';

jest.setTimeout(120_000);

let bed: EngineTestBed;
let work: string;
let blobs: FsBlobStore;
let engine: BuildEngine;

type Result = EngineBuildResult;

let seq = 0;

const build = (
  files: Record<string, string | Buffer> | Buffer,
  opts: { secrets?: Record<string, string>; buildArgs?: Record<string, string>; on?: BuildEngine } = {},
): Promise<Result> => {
  const { on, secrets, ...rest } = opts;
  // always a secret map (maybe empty), as the worker hands one to every build
  return buildWithEngine(on ?? engine, blobs, files, {
    ...rest,
    secrets: secrets ?? {},
    tags: [`it/mounts:${++seq}`],
  });
};

async function failure(
  files: Record<string, string | Buffer>,
  opts: { secrets?: Record<string, string> } = {},
): Promise<Error> {
  const err = await build(files, opts).then(
    () => new Error('the build succeeded'),
    (e: unknown) => e as Error,
  );
  expect(isUserBuildError(err)).toBe(true);
  return err;
}

/** The image's filesystem, all layers applied in order, in a new directory. */
const unpack = (digest: Digest): Promise<string> => unpackImage(engine, blobs, digest, work);

/** Names in the last layer of the image (what the last step changed). */
async function lastLayerNames(digest: Digest): Promise<string[]> {
  const image = await engine.images.load(null, digest);
  const layer = image.layers[image.layers.length - 1];
  const dir = await mkdtemp(join(work, 'layer-'));
  await applyLayer(await blobs.get(layer.digest as BlobDigest), dir);
  const out: string[] = [];
  const walk = async (d: string, prefix: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      out.push(`${prefix}${name}`);
      if ((await lstat(join(d, name))).isDirectory()) {
        await walk(join(d, name), `${prefix}${name}/`);
      }
    }
  };
  await walk(dir, '');
  return out;
}

const statuses = (r: Result): string[] => r.steps.map((s) => s.status);

/**
 * What a build leaves in the worker's scratch places: per-build dirs (jobs), runc bundles and
 * runc state (a container not deleted). All empty between builds, failed ones included, once
 * what a build leaves to the background (its sandbox networks) has ended.
 */
async function scratchLeftovers(): Promise<string[]> {
  await engine.settled();
  const out: string[] = [];
  for (const d of ['jobs', 'bundles', 'runc']) {
    const names = await readdir(join(work, d)).catch(() => [] as string[]);
    out.push(...names.map((n) => `${d}/${n}`));
  }
  return out;
}

/** Mounts (any type) below the test's directory. */
const mountsUnderWork = (): string[] => bed.mounts();

beforeAll(async () => {
  requireTools('runc', 'findmnt', 'cp', 'du', 'grep', 'tar');
  bed = await startEngineTestBed('mounts-it');
  ({ work, blobs } = bed);
  engine = bed.engine();
});

afterEach(() => {
  // Every build, failed or not, leaves nothing mounted.
  expect(mountsUnderWork()).toEqual([]);
});

afterAll(async () => {
  if (bed !== undefined) {
    expect(mountsUnderWork()).toEqual([]);
    await bed.stop();
  }
});

describe('type=bind', () => {
  it('binds the context read-only by default; neither its files nor its mountpoint reach the layer', async () => {
    const r = await build(
      busyboxContext(
        [
          'RUN --mount=type=bind,source=src,target=/app/src cat /app/src/a /app/src/sub/b > /out',
          'RUN --mount=type=bind,target=/ctx sh -c "touch /ctx/new 2>/dev/null && echo writable > /ro || echo read-only > /ro"',
        ].join('\n'),
        { 'src/a': 'A\n', 'src/sub/b': 'B\n' },
      ),
    );
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'out'), 'utf8')).toBe('A\nB\n');
    expect(await readFile(join(root, 'ro'), 'utf8')).toBe('read-only\n');
    await expect(lstat(join(root, 'app'))).rejects.toThrow(/ENOENT/);
    await expect(lstat(join(root, 'ctx'))).rejects.toThrow(/ENOENT/);
    expect(await lastLayerNames(r.imageDigest)).toEqual(['ro']);
  });

  it('rw: the step can write, the writes are thrown away and the next step sees the context unchanged', async () => {
    const r = await build(
      busyboxContext(
        [
          'RUN --mount=type=bind,source=f,target=/w/f,rw sh -c "echo changed > /w/f && cat /w/f > /first"',
          'RUN --mount=type=bind,source=f,target=/w/f cat /w/f > /second',
        ].join('\n'),
        { f: 'original\n' },
      ),
    );
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'first'), 'utf8')).toBe('changed\n');
    expect(await readFile(join(root, 'second'), 'utf8')).toBe('original\n');
    await expect(lstat(join(root, 'w'))).rejects.toThrow(/ENOENT/);
  });

  it("from=<stage>: a stage's files, by source; its writes (rw) do not change the stage", async () => {
    const r = await build(
      busyboxContext(
        [
          'RUN mkdir -p /data && echo staged > /data/v',
          'FROM scratch AS final',
          'ADD rootfs.tar /',
          'RUN --mount=type=bind,from=0,source=/data,target=/m,rw sh -c "cat /m/v > /got && echo x > /m/v"',
          'RUN --mount=type=bind,from=0,source=/data,target=/m cat /m/v > /again',
        ].join('\n'),
      ),
    );
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'got'), 'utf8')).toBe('staged\n');
    expect(await readFile(join(root, 'again'), 'utf8')).toBe('staged\n');
    await expect(lstat(join(root, 'data'))).rejects.toThrow(/ENOENT/);
    await expect(lstat(join(root, 'm'))).rejects.toThrow(/ENOENT/);
  });

  it('the bound content keys the step: a changed bound file misses, an unchanged rebuild is all cached', async () => {
    const df = 'RUN --mount=type=bind,source=pkg.json,target=/pkg.json cat /pkg.json > /copy';
    const first = await build(busyboxContext(df, { 'pkg.json': '{"v":1}', other: 'x' }));
    const again = await build(busyboxContext(df, { 'pkg.json': '{"v":1}', other: 'x' }));
    expect(statuses(again).every((s) => s === 'cached')).toBe(true);
    expect(again.imageDigest).toBe(first.imageDigest);
    const changed = await build(busyboxContext(df, { 'pkg.json': '{"v":2}', other: 'x' }));
    expect(statuses(changed).slice(-1)).toEqual(['done']);
    const root = await unpack(changed.imageDigest);
    expect(await readFile(join(root, 'copy'), 'utf8')).toBe('{"v":2}');
    // A file the mount does not show does not key it.
    const unrelated = await build(busyboxContext(df, { 'pkg.json': '{"v":2}', other: 'y' }));
    expect(statuses(unrelated).slice(-1)).toEqual(['cached']);
  });

  it.each([
    ['../', 'source=../,target=/x', /leads outside its root/],
    [
      'an absolute path outside the context',
      'source=/etc/passwd,target=/x',
      /"\/etc\/passwd" not found in the build context/,
    ],
    ['a symlink out', 'source=out/passwd,target=/x', /symbolic link to an absolute path/],
  ])('a source escaping the context (%s) fails with the line', async (_name, spec, message) => {
    const files = busyboxContext(`RUN echo ok\nRUN --mount=type=bind,${spec} cat /x`);
    const tar = await contextTarWithLink(files, 'out', '/etc');
    const err = await build(tar).then(
      () => new Error('the build succeeded'),
      (e: unknown) => e as Error,
    );
    expect(isUserBuildError(err)).toBe(true);
    expect(err.message).toMatch(message);
    expect(err.message).toMatch(/^Dockerfile:5: |on line 5: /);
    expect(mountsUnderWork()).toEqual([]);
    expect(await scratchLeftovers()).toEqual([]);
  });
});

describe('type=cache', () => {
  it('persists between builds, never in a layer, created with uid/gid/mode; ro cannot write', async () => {
    const df = [
      'ARG N',
      'RUN --mount=type=cache,id=c1,target=/var/cache/app,uid=1000,gid=100,mode=0750 sh -c "echo $N >> /var/cache/app/log; stat -c %u:%g:%a /var/cache/app > /owner; cat /var/cache/app/log > /seen"',
      'RUN --mount=type=cache,id=c1,target=/c,ro sh -c "touch /c/x 2>/dev/null && echo rw > /ro || echo ro > /ro"',
    ].join('\n');
    await build(busyboxContext(df), { buildArgs: { N: '1' } });
    const r = await build(busyboxContext(df), { buildArgs: { N: '2' } });
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'seen'), 'utf8')).toBe('1\n2\n');
    expect(await readFile(join(root, 'owner'), 'utf8')).toBe('1000:100:750\n');
    expect(await readFile(join(root, 'ro'), 'utf8')).toBe('ro\n');
    await expect(lstat(join(root, 'var/cache'))).rejects.toThrow(/ENOENT/);
    await expect(lstat(join(root, 'c'))).rejects.toThrow(/ENOENT/);
    // The id is a key: its directory is its hash, below the run-cache root.
    // (.locks: their lock files, shared by every worker on this DATA_DIR)
    const names = (await readdir(join(work, 'run-cache'))).filter((n) => n !== '.locks');
    expect(names.every((n) => /^[0-9a-f]{64}(-\d+)?$/.test(n))).toBe(true);
  });

  it('from/source seed a new cache directory, writable and kept; the stage is unchanged', async () => {
    const r = await build(
      busyboxContext(
        [
          'RUN mkdir -p /seed && echo seeded > /seed/s',
          'FROM scratch AS final',
          'ADD rootfs.tar /',
          'RUN --mount=type=cache,id=seeded,from=0,source=/seed,target=/c sh -c "cat /c/s > /got; echo more > /c/t"',
          'RUN --mount=type=cache,id=seeded,from=0,source=/seed,target=/c ls /c > /kept',
          'RUN --mount=type=bind,from=0,source=/seed,target=/b ls /b > /stage',
        ].join('\n'),
      ),
    );
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'got'), 'utf8')).toBe('seeded\n');
    expect(await readFile(join(root, 'kept'), 'utf8')).toBe('s\nt\n');
    expect(await readFile(join(root, 'stage'), 'utf8')).toBe('s\n');
  });

  it('a seeded cache directory is a copy of the whole `from` root: a whole mount after a source mount shows all of it', async () => {
    const r = await build(
      busyboxContext(
        [
          'RUN mkdir -p /seed /other && echo s > /seed/s && echo o > /other/o && ln -s seed /link',
          'FROM scratch AS final',
          'ADD rootfs.tar /',
          'ENV PATH=/bin',
          'RUN --mount=type=bind,from=0,target=/b ls -A /b > /stage',
          // The first mount of the directory shows one path of it...
          'RUN --mount=type=cache,id=whole,from=0,source=/seed,target=/c sh -c "ls -A /c > /l1; echo w > /c/w"',
          // ...but the directory holds the whole stage, with that mount's write.
          'RUN --mount=type=cache,id=whole,from=0,target=/c sh -c "ls -A /c > /l2; cat /c/other/o /c/seed/w > /o2"',
          // A source through a link of the stage: resolved inside the directory, as in the stage.
          'RUN --mount=type=cache,id=whole,from=0,source=/link,target=/c ls -A /c > /l3',
        ].join('\n'),
      ),
    );
    const root = await unpack(r.imageDigest);
    const read = (f: string): Promise<string> => readFile(join(root, f), 'utf8');
    expect(await read('l1')).toBe('s\n');
    const stage = await read('stage');
    expect(stage.split('\n')).toEqual(expect.arrayContaining(['bin', 'link', 'other', 'seed']));
    expect(await read('l2')).toBe(stage);
    expect(await read('o2')).toBe('o\nw\n');
    expect(await read('l3')).toBe('s\nw\n');
  });

  it('a seed source the stage lacks, or a seed over the cache budget: a clear error, no directory kept', async () => {
    const cacheDirs = async (dir: string): Promise<string[]> =>
      (await readdir(dir).catch(() => [] as string[])).filter((n) => n !== '.locks').sort();
    const before = await cacheDirs(join(work, 'run-cache'));
    const err = await failure(
      busyboxContext(
        [
          'RUN mkdir /seed',
          'FROM scratch AS final',
          'ADD rootfs.tar /',
          'RUN --mount=type=cache,id=lacks,from=0,source=/nope,target=/c true',
        ].join('\n'),
      ),
    );
    expect(err.message).toMatch(/^Dockerfile:7: .*source "\/nope" not found in 0/);
    expect(await cacheDirs(join(work, 'run-cache'))).toEqual(before);
    // A host whose cache budget is smaller than the stage: the seed is refused before any copy.
    const small = join(work, 'small-budget');
    const tight = bed.engine(small, { runCacheMaxBytes: 64 * 1024 });
    const tooBig = await build(
      busyboxContext(
        [
          'RUN true',
          'FROM scratch AS final',
          'ADD rootfs.tar /',
          'RUN --mount=type=cache,from=0,target=/c true',
        ].join('\n'),
      ),
      { on: tight },
    ).then(
      () => new Error('the build succeeded'),
      (e: unknown) => e as Error,
    );
    expect(isUserBuildError(tooBig)).toBe(true);
    expect(tooBig.message).toMatch(
      /^Dockerfile:7: .*cannot seed the cache from 0: the seed is \d+ bytes, more than this host's budget for cache mounts \(RUN_CACHE_MAX_BYTES=65536\)/,
    );
    expect(await cacheDirs(join(small, 'run-cache'))).toEqual([]);
    expect(mountsUnderWork()).toEqual([]);
  });

  it('a cache directory is keyed as BuildKit keys it: id, plus `from`, plus uid/gid/mode without a source', async () => {
    // BuildKit: id defaults to path.Clean(target); the cache ref is `<id>:<seed ref>` when a seed
    // exists (`from`, or the mkdir that uid/gid/mode make when there is no source), else `<id>`.
    const df = [
      'RUN mkdir -p /a /b && echo one > /a/f && echo b1 > /b/f',
      'FROM scratch AS two',
      'ADD rootfs.tar /',
      'RUN mkdir -p /a && echo two > /a/f',
      'FROM scratch AS final',
      'ADD rootfs.tar /',
      'ENV PATH=/bin',
      // The same id from two stages: two directories, each seeded by its own stage.
      'RUN --mount=type=cache,id=k,from=0,source=/a,target=/c sh -c "cat /c/f > /s1; echo w1 > /c/w"',
      'RUN --mount=type=cache,id=k,from=two,source=/a,target=/c sh -c "cat /c/f > /s2; ls /c > /l2"',
      // The same id and stage, another source: the same directory, that path of the seed.
      'RUN --mount=type=cache,id=k,from=0,source=/b,target=/c cat /c/f > /s3',
      // The whole stage as seed: its /a as the earlier mount left it (w1), its /b as copied.
      'RUN --mount=type=cache,id=k,from=0,target=/c sh -c "ls /c/a > /l4; cat /c/b/f > /s4"',
      // No seed: the id alone, a directory of its own, empty; a trailing slash is the same id.
      'RUN --mount=type=cache,id=k,target=/c sh -c "ls -A /c > /l5; echo plain > /c/p"',
      'RUN --mount=type=cache,target=/d/ sh -c "echo d > /d/x"',
      'RUN --mount=type=cache,id=/d,target=/e sh -c "cat /e/x > /s6"',
      'RUN --mount=type=cache,id=k,target=/c ls -A /c > /l7',
      // uid/gid/mode without a source make a seed of their own: another directory.
      'RUN --mount=type=cache,id=k,target=/c,uid=7 sh -c "ls -A /c > /l8; stat -c %u /c > /u8"',
    ].join('\n');
    const r = await build(busyboxContext(df));
    const root = await unpack(r.imageDigest);
    const read = (f: string): Promise<string> => readFile(join(root, f), 'utf8');
    expect(await read('s1')).toBe('one\n');
    expect(await read('s2')).toBe('two\n');
    expect(await read('l2')).toBe('f\n');
    expect(await read('s3')).toBe('b1\n');
    // BuildKit's cache is a copy of the whole stage: a later whole mount holds the earlier
    // mount's write (w1) and the stage's other files.
    expect(await read('l4')).toBe('f\nw\n');
    expect(await read('s4')).toBe('b1\n');
    expect(await read('l5')).toBe('');
    expect(await read('s6')).toBe('d\n');
    expect(await read('l7')).toBe('p\n');
    expect(await read('l8')).toBe('');
    expect(await read('u8')).toBe('7\n');
  });

  const interval = (sharing: string, tag: string): Record<string, string | Buffer> =>
    busyboxContext(
      `RUN --mount=type=cache,id=conc-${sharing},target=/c,sharing=${sharing} sh -c "echo ${tag} > /c/${tag}; cut -d' ' -f1 /proc/uptime > /start; sleep 1; ls /c > /seen; cut -d' ' -f1 /proc/uptime > /end"`,
    );

  async function times(r: Result): Promise<{ start: number; end: number; seen: string[] }> {
    const root = await unpack(r.imageDigest);
    return {
      start: Number(await readFile(join(root, 'start'), 'utf8')),
      end: Number(await readFile(join(root, 'end'), 'utf8')),
      seen: (await readFile(join(root, 'seen'), 'utf8')).trim().split('\n'),
    };
  }

  it('sharing=locked: two concurrent builds on one id never overlap', async () => {
    const [a, b] = await Promise.all([build(interval('locked', 'a')), build(interval('locked', 'b'))]);
    const [ta, tb] = [await times(a), await times(b)];
    expect(ta.end <= tb.start || tb.end <= ta.start).toBe(true);
  });

  it('sharing=shared: they run at once on one directory', async () => {
    const [a, b] = await Promise.all([build(interval('shared', 'a')), build(interval('shared', 'b'))]);
    const [ta, tb] = [await times(a), await times(b)];
    expect(ta.start < tb.end && tb.start < ta.end).toBe(true);
    expect(ta.seen).toEqual(['a', 'b']);
  });

  it('sharing=private: each concurrent build gets its own directory', async () => {
    const [a, b] = await Promise.all([build(interval('private', 'a')), build(interval('private', 'b'))]);
    const [ta, tb] = [await times(a), await times(b)];
    expect(ta.start < tb.end && tb.start < ta.end).toBe(true);
    expect(ta.seen).toEqual(['a']);
    expect(tb.seen).toEqual(['b']);
  });

  it('the host trims unused cache directories to its budget, least recently used first', async () => {
    await build(
      busyboxContext(
        'RUN --mount=type=cache,id=big,target=/c dd if=/dev/zero of=/c/f bs=1k count=512 2>/dev/null',
      ),
    );
    const before = (await readdir(join(work, 'run-cache'))).filter((n) => n !== '.locks');
    const out = await engine.runCache.trim(0);
    expect(out.removed).toBe(before.length);
    expect(await readdir(join(work, 'run-cache'))).toEqual(['.locks']);
  });
});

describe('type=tmpfs', () => {
  it('a tmpfs of the given size at the target; nothing of it in the layer', async () => {
    const r = await build(
      busyboxContext(
        'RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c "grep \' /scratch \' /proc/mounts > /m; echo x > /scratch/f; dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null && echo fits > /size || echo full > /size"',
      ),
    );
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'm'), 'utf8')).toMatch(/^tmpfs \/scratch tmpfs .*size=1024k/);
    expect(await readFile(join(root, 'size'), 'utf8')).toBe('full\n');
    await expect(lstat(join(root, 'scratch'))).rejects.toThrow(/ENOENT/);
    expect(await lastLayerNames(r.imageDigest)).toEqual(['m', 'size']);
  });
});

describe('type=secret', () => {
  const value = 's3cr3t-value-1234';

  it('a file on /run/secrets/<id> (mode 0400) and an env variable; masked in the log; never in a layer', async () => {
    const r = await build(
      busyboxContext(
        [
          'RUN --mount=type=secret,id=tok stat -c %a:%u /run/secrets/tok > /mode && cat /run/secrets/tok && wc -c < /run/secrets/tok > /len',
          'RUN --mount=type=secret,id=tok,env=TOKEN,target=/opt/sec/tok,mode=0440,uid=7 sh -c "echo env=$TOKEN; stat -c %a:%u /opt/sec/tok > /mode2"',
        ].join('\n'),
      ),
      { secrets: { tok: value } },
    );
    expect(r.logs).toContain('****');
    expect(r.logs).toContain('env=****');
    expect(r.logs).not.toContain(value);
    const root = await unpack(r.imageDigest);
    expect(await readFile(join(root, 'mode'), 'utf8')).toBe('400:0\n');
    expect(await readFile(join(root, 'mode2'), 'utf8')).toBe('440:7\n');
    expect((await readFile(join(root, 'len'), 'utf8')).trim()).toBe(String(value.length));
    await expect(lstat(join(root, 'run'))).rejects.toThrow(/ENOENT/);
    expect(await lastLayerNames(r.imageDigest)).toEqual(['mode2']);
    // Not in a layer blob, nor the config.
    const image = await engine.images.load(null, r.imageDigest);
    expect(JSON.stringify(image.config)).not.toContain(value);
    for (const l of image.layers) {
      const dir = await mkdtemp(join(work, 'scan-'));
      await applyLayer(await blobs.get(l.digest as BlobDigest), dir);
      // grep exits 1 when nothing matches, 0 when something does.
      const found = spawnSync('grep', ['-rl', '--', value, dir], { encoding: 'utf8' });
      expect([found.status, found.stdout]).toEqual([1, '']);
    }
  });

  it('a changed secret value keeps the cache; a missing optional secret is skipped', async () => {
    const df = 'RUN --mount=type=secret,id=k cat /run/secrets/k > /dev/null; echo done > /d';
    await build(busyboxContext(df), { secrets: { k: 'one-value' } });
    const again = await build(busyboxContext(df), { secrets: { k: 'another-value' } });
    expect(statuses(again).slice(-1)).toEqual(['cached']);
    const opt = await build(
      busyboxContext('RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo skipped > /s'),
    );
    expect(await readFile(join(await unpack(opt.imageDigest), 's'), 'utf8')).toBe('skipped\n');
  });

  it.each([
    [
      'required=true',
      'RUN --mount=type=secret,id=npm,required=true cat /run/secrets/npm',
      {},
      /secret "npm" is required/,
    ],
    ['env=', 'RUN --mount=type=secret,id=npm,env=NPM_TOKEN true', {}, /secret "npm" is required/],
    [
      'over the size limit',
      'RUN --mount=type=secret,id=npm cat /run/secrets/npm',
      { npm: 'x'.repeat(500 * 1024 + 1) },
      /larger than 512000 bytes/,
    ],
    ['an unknown mount type', 'RUN --mount=type=volume,target=/v true', {}, /unsupported mount type/],
    ['an unknown option', 'RUN --mount=type=cache,target=/c,colour=red true', {}, /unexpected key 'colour'/],
  ])('%s: a clear error with the line', async (_name, line, secrets, message) => {
    const err = await failure(busyboxContext(`RUN echo ok\n${line}`), { secrets });
    expect(err.message).toMatch(message);
    expect(err.message).toMatch(/^Dockerfile:5: |on line 5: /);
    // Nothing mounted, nothing left in the worker's scratch places.
    expect(mountsUnderWork()).toEqual([]);
    expect(await scratchLeftovers()).toEqual([]);
  });
});

it('a relative target is below WORKDIR, as in BuildKit', async () => {
  const r = await build(
    busyboxContext('WORKDIR /w\nRUN --mount=type=bind,source=f,target=f cat /w/f > /got', { f: 'rel\n' }),
  );
  const root = await unpack(r.imageDigest);
  expect(await readFile(join(root, 'got'), 'utf8')).toBe('rel\n');
  expect((await stat(join(root, 'w'))).isDirectory()).toBe(true);
  await expect(lstat(join(root, 'w/f'))).rejects.toThrow(/ENOENT/);
});

/** A context tar of `files` plus a symlink `name` -> `target` (tar keeps it as a link). */
async function contextTarWithLink(
  files: Record<string, string | Buffer>,
  name: string,
  target: string,
): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'stratum-ctx-link-'));
  try {
    writeTree(files, dir);
    execFileSync('ln', ['-s', target, join(dir, name)]);
    return execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
