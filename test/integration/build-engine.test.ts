// BuildEngine against real runc, overlayfs, a filesystem blob store and a real redis-server:
// the step cache (hits, misses, sharing between two "hosts", a vanished blob), and the
// Docker/BuildKit behaviours the engine implements itself (COPY through symlinks, .dockerignore,
// ADD <url>, WORKDIR, secrets, SOURCE_DATE_EPOCH, errors with lines).
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { createServer, Server } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  BuildEngine,
  BuildEngineOptions,
  cacheRecordKey,
  isUserBuildError,
  MemoryBuildCacheIndex,
} from '@stratum/engine';
import { opaqueName } from '@stratum/confine';
import { Digest } from '@stratum/contracts';
import { BlobDigest, FsBlobStore } from '@stratum/storage';
import {
  buildWithEngine,
  busyboxContext,
  contextTar,
  EngineBuildOptions,
  EngineBuildResult,
  freePort,
  EngineTestBed,
  startEngineTestBed,
  unpackImage,
} from '@stratum/testing';

jest.setTimeout(120_000);

let bed: EngineTestBed;
let work: string;
let redis: Redis;
let blobs: FsBlobStore;

/** One worker host: its own scratch, layer cache and runc state; shared blob store and Redis. */
const host = (name: string, extra: Partial<BuildEngineOptions> = {}): BuildEngine =>
  bed.engine(join(work, name), extra);

type Result = EngineBuildResult;

const build = (
  engine: BuildEngine,
  files: Record<string, string | Buffer> | Buffer,
  opts: EngineBuildOptions = {},
): Promise<Result> => buildWithEngine(engine, blobs, files, opts);

/** The image's filesystem, all layers applied in order, in a new directory. */
const unpack = (engine: BuildEngine, digest: Digest): Promise<string> =>
  unpackImage(engine, blobs, digest, work);

const statuses = (r: Result): string[] => r.steps.map((s) => s.status);

beforeAll(async () => {
  bed = await startEngineTestBed('build-it');
  ({ work, redis, blobs } = bed);
});

afterAll(async () => {
  const mounts = bed?.mounts('overlay');
  await bed?.stop();
  expect(mounts).toEqual([]);
});

describe('step cache', () => {
  const dockerfile = [
    'ARG GREETING=hello',
    'RUN mkdir /out && echo "$GREETING" > /out/greeting',
    'COPY app.conf /etc/app.conf',
    'COPY src/ /src/',
    'RUN cat /etc/app.conf /src/* > /out/all',
    'WORKDIR /srv/www',
    'CMD ["cat", "/out/all"]',
  ].join('\n');
  const files = (conf = 'a=1\n', readme = 'readme\n'): Record<string, string | Buffer> =>
    busyboxContext(dockerfile, { 'app.conf': conf, 'src/x.txt': 'x\n', 'README.md': readme });

  it('a second build replays every step from the cache and gives the same image', async () => {
    const a = host('a');
    const cold = await build(a, files());
    expect(statuses(cold).every((s) => s === 'done')).toBe(true);
    const warm = await build(a, files());
    expect(statuses(warm).every((s) => s === 'cached')).toBe(true);
    expect(warm.imageDigest).toBe(cold.imageDigest);
    // layer sizes are reported for cached filesystem steps too
    expect(warm.steps[0].layerSize).toBe(cold.steps[0].layerSize);
    expect(warm.logs).toMatch(/9 of 9 steps cached/);
  });

  it('a rebuild of the same context blob memoizes what it read: no extraction when all is cached', async () => {
    const a = host('a1');
    const tar = await contextTar(files('memo=1\n'));
    const cold = await build(a, tar);
    expect(cold.logs).toMatch(/loading build context/);
    const warm = await build(a, tar);
    expect(statuses(warm).every((s) => s === 'cached')).toBe(true);
    expect(warm.imageDigest).toBe(cold.imageDigest);
    expect(warm.logs).not.toMatch(/loading build context/);
    // with the digests memoized but the steps run, the context is extracted when a COPY runs
    const rerun = await build(a, tar, { noCache: true });
    expect(statuses(rerun).every((s) => s === 'done')).toBe(true);
    expect(rerun.logs).toMatch(/loading build context/);
    const root = await unpack(a, rerun.imageDigest);
    expect(await readFile(join(root, 'out/all'), 'utf8')).toBe('memo=1\nx\n');
  });

  it('another host reuses the cache (Redis index + shared blobs) and can build on cached layers', async () => {
    const b = host('b');
    const warm = await build(b, files('a=1\n', 'another readme\n'));
    // README.md is in no step's sources: still fully cached
    expect(statuses(warm).every((s) => s === 'cached')).toBe(true);
    // app.conf changes: the COPY of it and every later filesystem step rebuild on this host,
    // on top of cached layers it never built (extracted from the blob store)
    const changed = await build(b, files('a=2\n'));
    expect(statuses(changed)).toEqual([
      'cached', // ADD rootfs.tar
      'cached', // ENV PATH
      'cached', // ARG
      'cached', // RUN mkdir /out
      'done', // COPY app.conf
      'done', // COPY src/ (its parent changed)
      'done', // RUN cat
      'done', // WORKDIR /srv/www
      'done', // CMD
    ]);
    const root = await unpack(b, changed.imageDigest);
    expect(await readFile(join(root, 'out/all'), 'utf8')).toBe('a=2\nx\n');
    expect(await readFile(join(root, 'out/greeting'), 'utf8')).toBe('hello\n');
  });

  it('a cache entry that cannot be written fails the build at its end, before the image is written, with nothing left mounted', async () => {
    // The entries of steps without a pending layer are written beside the next steps now:
    // a failing write must still fail the build (as it did when each step awaited it).
    const index = new MemoryBuildCacheIndex();
    let writes = 0;
    const failing = host('failing-index', {
      cacheIndex: {
        get: (k) => index.get(k),
        delete: (k) => index.delete(k),
        put: async (k, r) => {
          writes++;
          if (r.layer === null) {
            throw new Error('cache index unreachable');
          }
          await index.put(k, r);
        },
      },
    });
    await expect(build(failing, files('failing=1\n'))).rejects.toThrow('cache index unreachable');
    expect(writes).toBeGreaterThan(1);
    expect(bed.mounts('overlay')).toEqual([]);
    // the same build with a working index: every step recorded, a rebuild is fully cached
    const ok = host('working-index', { cacheIndex: index });
    await build(ok, files('failing=1\n'));
    expect(statuses(await build(ok, files('failing=1\n'))).every((st) => st === 'cached')).toBe(true);
  });

  it('a build arg that changes the RUN environment misses from that RUN on', async () => {
    const a = host('a2');
    const r = await build(a, files(), { buildArgs: { GREETING: 'bonjour' } });
    expect(statuses(r).slice(0, 4)).toEqual(['cached', 'cached', 'done', 'done']);
    const root = await unpack(a, r.imageDigest);
    expect(await readFile(join(root, 'out/greeting'), 'utf8')).toBe('bonjour\n');
  });

  it('noCache runs everything but still records, and a vanished layer blob is a miss', async () => {
    const a = host('a3');
    const body = 'RUN echo nocache > /n';
    const first = await build(a, busyboxContext(body), { noCache: true });
    expect(statuses(first).every((s) => s === 'done')).toBe(true);
    const second = await build(a, busyboxContext(body));
    expect(statuses(second).every((s) => s === 'cached')).toBe(true);
    // delete the RUN's layer blob: its record must not be trusted
    const image = await a.images.load(null, second.imageDigest);
    const runLayer = image.layers[image.layers.length - 1];
    const keys = await redis.keys(cacheRecordKey('*'));
    const values = await Promise.all(keys.map((k) => redis.get(k)));
    const stale = keys.filter((_, i) => values[i]?.includes(runLayer.digest));
    expect(stale.length).toBeGreaterThan(0);
    await blobs.delete(runLayer.digest as BlobDigest);
    const third = await build(a, busyboxContext(body));
    expect(statuses(third)).toEqual(['cached', 'cached', 'done']);
    // Rebuilt: the third image's RUN layer exists (its digest matches the old one only when the
    // rebuild falls in the same second: file mtimes are in the layer).
    const rebuilt = await a.images.load(null, third.imageDigest);
    const newRunLayer = rebuilt.layers[rebuilt.layers.length - 1];
    expect(await blobs.has(newRunLayer.digest as BlobDigest)).toBe(true);
  });
});

describe('Docker/BuildKit behaviours', () => {
  it('COPY resolves symlinked destination parents inside the container root', async () => {
    const e = host('c');
    const r = await build(
      e,
      busyboxContext(
        [
          'RUN mkdir -p /real /etc/conf.d && ln -s /real /link && ln -s ../etc/conf.d /rel && ln -s / /root-link',
          'COPY f.txt /link/sub/f.txt',
          'COPY f.txt /rel/',
          'COPY f.txt /root-link/../../../escaped.txt',
          'COPY dir/ /link/',
        ].join('\n'),
        { 'f.txt': 'content\n', 'dir/a/b.txt': 'b\n' },
      ),
    );
    const root = await unpack(e, r.imageDigest);
    expect(await readFile(join(root, 'real/sub/f.txt'), 'utf8')).toBe('content\n');
    expect(await readFile(join(root, 'etc/conf.d/f.txt'), 'utf8')).toBe('content\n');
    expect(await readFile(join(root, 'escaped.txt'), 'utf8')).toBe('content\n');
    expect(await readFile(join(root, 'real/a/b.txt'), 'utf8')).toBe('b\n');
    expect(await readlink(join(root, 'link'))).toBe('/real');
  });

  it('applies .dockerignore to uploaded contexts (with ! exceptions), keeping the Dockerfile', async () => {
    const e = host('d');
    const r = await build(
      e,
      busyboxContext('COPY . /ctx/\nRUN cd /ctx && find . | sort > /list', {
        '.dockerignore': '# secrets\nsecret*\n!secret-ok\nnode_modules\n**/*.log\n',
        'secret.key': 'k',
        'secret-ok': 'ok',
        'node_modules/x/index.js': 'x',
        'sub/debug.log': 'log',
        'sub/keep.txt': 'keep',
      }),
    );
    const root = await unpack(e, r.imageDigest);
    const list = (await readFile(join(root, 'list'), 'utf8')).trim().split('\n');
    expect(list).toEqual(
      expect.arrayContaining([
        './.dockerignore',
        './Dockerfile',
        './secret-ok',
        './sub/keep.txt',
        './rootfs.tar',
      ]),
    );
    expect(list.filter((p) => /secret\.key|node_modules|debug\.log/.test(p))).toEqual([]);
    expect(r.logs).toMatch(/\.dockerignore: left out/);
  });

  describe('ADD <url>', () => {
    let server: Server;
    let port: number;
    let requests = 0;
    const body = 'remote file\n';
    const sha = `sha256:${createHash('sha256').update(body).digest('hex')}`;

    beforeAll(async () => {
      port = await freePort();
      server = createServer((req, res) => {
        requests++;
        if (req.url === '/files/data.txt') {
          res.writeHead(200, {
            'last-modified': 'Wed, 21 Oct 2015 07:28:00 GMT',
            'content-type': 'text/plain',
          });
          res.end(body);
        } else {
          res.writeHead(404).end();
        }
      });
      await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    });
    afterAll(async () => {
      await new Promise((r) => server.close(r));
    });

    it('fetches into the image with mode 0600 and the Last-Modified time', async () => {
      const e = host('u');
      const r = await build(
        e,
        busyboxContext(
          `ADD http://127.0.0.1:${port}/files/data.txt /dl/\nADD http://127.0.0.1:${port}/files/data.txt /named`,
        ),
      );
      const root = await unpack(e, r.imageDigest);
      expect(await readFile(join(root, 'dl/data.txt'), 'utf8')).toBe(body);
      const st = await lstat(join(root, 'named'));
      expect(st.mode & 0o7777).toBe(0o600);
      expect(st.mtime.toISOString()).toBe('2015-10-21T07:28:00.000Z');
    });

    it('--checksum is verified, and a cached ADD with a checksum does not download again', async () => {
      const e = host('u2');
      const df = `ADD --checksum=${sha} http://127.0.0.1:${port}/files/data.txt /c.txt`;
      await build(e, busyboxContext(df));
      const before = requests;
      const again = await build(e, busyboxContext(df));
      expect(statuses(again).every((s) => s === 'cached')).toBe(true);
      expect(requests).toBe(before);
      const bad = `ADD --checksum=sha256:${'0'.repeat(64)} http://127.0.0.1:${port}/files/data.txt /c.txt`;
      await expect(build(e, busyboxContext(bad))).rejects.toMatchObject({
        name: 'BuildError',
        line: 4,
        message: expect.stringMatching(/checksum mismatch/),
      });
      await expect(
        build(e, busyboxContext(`ADD http://127.0.0.1:${port}/missing.txt /m`)),
      ).rejects.toMatchObject({ line: 4, message: expect.stringMatching(/404/) });
    });
  });

  it('WORKDIR creates a missing directory (owned by USER) in a layer; an existing one adds no layer', async () => {
    const e = host('w');
    const r = await build(
      e,
      busyboxContext('USER 65534:65534\nWORKDIR /home/app/data\nWORKDIR /tmp\nUSER root'),
    );
    const image = await e.images.load(null, r.imageDigest);
    const history = image.config.history ?? [];
    const workdirs = history.filter((h) => h.created_by?.startsWith('WORKDIR'));
    expect(workdirs.map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['WORKDIR /home/app/data', false],
      ['WORKDIR /tmp', true],
    ]);
    expect(image.layers).toHaveLength(2);
    const root = await unpack(e, r.imageDigest);
    const st = await lstat(join(root, 'home/app/data'));
    expect(st.isDirectory()).toBe(true);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([65534, 65534, 0o755]);
  });

  it('WORKDIR sees the image as overlay does: a deleted, an opaquely replaced or a symlinked dir', async () => {
    // whether a WORKDIR exists is first looked up in the layer dirs without a mount: these
    // are the cases where the layers above must win (or a mount must decide)
    const e = host('wd');
    const r = await build(
      e,
      busyboxContext(
        [
          'RUN mkdir -p /gone /swap/sub /real && ln -s /real /link',
          'RUN rm -rf /gone /swap && mkdir /swap',
          'WORKDIR /gone',
          'WORKDIR /swap/sub',
          'WORKDIR /link',
          'WORKDIR /real',
          'WORKDIR /bin',
        ].join('\n'),
      ),
    );
    const image = await e.images.load(null, r.imageDigest);
    const workdirs = (image.config.history ?? []).filter((h) => h.created_by?.startsWith('WORKDIR'));
    expect(workdirs.map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['WORKDIR /gone', false],
      ['WORKDIR /swap/sub', false],
      ['WORKDIR /link', true],
      ['WORKDIR /real', true],
      ['WORKDIR /bin', true],
    ]);
    const root = await unpack(e, r.imageDigest);
    expect((await lstat(join(root, 'gone'))).isDirectory()).toBe(true);
    expect((await lstat(join(root, 'swap/sub'))).isDirectory()).toBe(true);
    expect((await lstat(join(root, 'link'))).isSymbolicLink()).toBe(true);
  });

  it('reports the written image (onImage) before the build cleans up; a failing report fails the build, cleaned up all the same', async () => {
    const e = host('report');
    const jobs = join(work, 'report', 'jobs');
    let seen: { imageDigest: string; jobDirs: string[] } | null = null;
    const r = await build(e, busyboxContext('RUN echo hi > /hi'), {
      buildId: 'report-1',
      onImage: async (outcome) => {
        seen = { imageDigest: outcome.imageDigest, jobDirs: await readdir(jobs) };
      },
    });
    // the image was written and the job dir (its containers, its context) not yet removed
    expect(seen).toEqual({ imageDigest: r.imageDigest, jobDirs: ['report-1'] });
    expect(await readdir(jobs)).toEqual([]); // gone once build() resolved
    await expect(
      build(e, busyboxContext('RUN echo again > /hi'), {
        buildId: 'report-2',
        onImage: () => Promise.reject(new Error('record store down')),
      }),
    ).rejects.toThrow('record store down');
    expect(await readdir(jobs)).toEqual([]);
  });

  it('RUN --mount=type=secret: a required secret fails with its line, an optional one is skipped', async () => {
    const e = host('s');
    await expect(
      build(
        e,
        busyboxContext('RUN echo ok\nRUN --mount=type=secret,id=npm,required=true cat /run/secrets/npm'),
      ),
    ).rejects.toMatchObject({
      name: 'BuildError',
      line: 5,
      message: expect.stringMatching(/secret "npm" is required but was not given/),
    });
    const r = await build(e, busyboxContext('RUN --mount=type=secret,id=npm echo fine > /f'));
    expect(statuses(r).pop()).toBe('done');
  });

  it('SOURCE_DATE_EPOCH dates the image, its history and clamps file times', async () => {
    const e = host('t');
    const r = await build(e, busyboxContext('RUN echo x > /new && touch -d "2030-01-01" /future'), {
      buildArgs: { SOURCE_DATE_EPOCH: '1700000000' },
    });
    const image = await e.images.load(null, r.imageDigest);
    const when = new Date(1_700_000_000_000).toISOString();
    expect(image.config.created).toBe(when);
    expect(new Set((image.config.history ?? []).map((h) => h.created))).toEqual(new Set([when]));
    const root = await unpack(e, r.imageDigest);
    expect((await lstat(join(root, 'future'))).mtimeMs).toBeLessThanOrEqual(1_700_000_000_000);
    expect(r.logs).not.toMatch(/not consumed.*SOURCE_DATE_EPOCH/);
  });

  it('the image is dated by its newest history entry (not the time of a cached rebuild)', async () => {
    const e = host('t2');
    const first = await build(e, busyboxContext('RUN echo dated > /d'));
    const image = await e.images.load(null, first.imageDigest);
    const newest = (image.config.history ?? [])
      .map((h) => h.created ?? '')
      .sort()
      .pop();
    expect(image.config.created).toBe(newest);
  });

  it('ADD of a local archive untars it as a plain archive: a .wh.* name is a file, not a whiteout', async () => {
    const e = host('wh');
    const archive = await contextTar({ 'app/.wh.keep': 'not a whiteout', 'app/other': 'y' });
    const err: unknown = await build(
      e,
      busyboxContext('RUN mkdir /app && echo kept > /app/keep\nADD extra.tar /\n', { 'extra.tar': archive }),
    ).catch((x: unknown) => x);
    // As a layer it would have deleted /app/keep silently; as a file it cannot be stored in a
    // layer (its name would mean a whiteout to every reader), so the step fails naming it.
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toMatch(/app\/\.wh\.keep/);
  });

  it('a context that unpacks past maxContextBytes fails as a user error naming the limit', async () => {
    const e = host('ctx-limit', { maxContextBytes: 100_000 });
    const err: unknown = await build(e, busyboxContext('RUN true\n')).catch((x: unknown) => x);
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toMatch(/limit of 100000 bytes/);
  });

  it('a malformed Dockerfile fails as a user error with its line number', async () => {
    const e = host('m');
    const err: unknown = await build(e, busyboxContext('RUN echo fine\nCOPY --bogus=1 a b\n')).catch(
      (x: unknown) => x,
    );
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toMatch(/line 5/);
    const err2: unknown = await build(e, busyboxContext('RUNN echo typo\n')).catch((x: unknown) => x);
    expect(isUserBuildError(err2)).toBe(true);
    expect((err2 as Error).message).toMatch(/line 4.*RUNN/i);
  });
});

// Issue 13: user-given names and paths never reach outside their root.
describe('hostile paths', () => {
  it('RUN --mount=type=cache ids are opaque keys: `..`, `/`, long ids each get an empty dir of their own', async () => {
    const e = host('cache-ids');
    const dataDir = join(work, 'cache-ids');
    const ids = ['..', '../..', '/', '.', 'a/../../..', 'x'.repeat(300)];
    const runs = ids.map(
      (id, i) =>
        `RUN --mount=type=cache,id=${id},target=/c ls -A /c > /seen${i} && echo ${i} > /c/written${i}`,
    );
    const r = await build(
      e,
      busyboxContext(`${runs.join('\n')}\nRUN --mount=type=cache,id=..,target=/c ls -A /c > /again`),
    );
    const root = await unpack(e, r.imageDigest);
    for (let i = 0; i < ids.length; i++) {
      expect(await readFile(join(root, `seen${i}`), 'utf8')).toBe('');
    }
    // The same id is the same cache (what a cache mount is for), and holds only what it wrote.
    expect(await readFile(join(root, 'again'), 'utf8')).toBe('written0\n');
    // Nothing was written anywhere in the data dir but below run-cache/<sha256 of the id>.
    const runCache = join(dataDir, 'run-cache');
    const cacheDirs = ids.map((id) => opaqueName(id)).sort();
    expect((await readdir(runCache)).sort()).toEqual(['.locks', ...cacheDirs].sort());
    // .locks holds the flock files of the cache dirs (see RunCacheStore): `<name>` (in use)
    // and `<name>.seed` (made once), each named after a cache dir
    expect((await readdir(join(runCache, '.locks'))).sort()).toEqual(
      cacheDirs.flatMap((n) => [n, `${n}.seed`]).sort(),
    );
    expect((await readdir(dataDir)).sort()).toEqual(['bundles', 'jobs', 'layers', 'run-cache', 'runc']);
    for (const entry of ['bundles', 'jobs', 'layers', 'run-cache', 'runc']) {
      expect(await readdir(join(dataDir, entry)).then((l) => l.filter((n) => /^written/.test(n)))).toEqual(
        [],
      );
    }
    expect(await readFile(join(runCache, opaqueName('..'), 'written0'), 'utf8')).toBe('0\n');
  });

  it('a Dockerfile path through a symlinked directory to a host file fails without reading it', async () => {
    const e = host('df-link');
    const secret = join(work, 'host-secret');
    await writeFile(secret, 'FROM host-secret-content\n');
    for (const [link, target] of [
      ['sub', work], // absolute host path
      ['sub', '../../../../../../../..' + work], // relative, climbing out
    ]) {
      const ctx = await contextTar(busyboxContext('RUN true'), { [link]: target });
      const err: unknown = await build(e, ctx, { dockerfile: 'sub/host-secret' }).catch((x: unknown) => x);
      expect(isUserBuildError(err)).toBe(true);
      expect((err as Error).message).toMatch(
        /Dockerfile path "sub\/host-secret" goes through a symbolic link|Dockerfile path "sub\/host-secret" leads outside its root/,
      );
      expect((err as Error).message).not.toContain('host-secret-content');
      expect((err as Error).message).not.toContain(work);
    }
    // A link that stays inside the context is followed, as BuildKit does.
    const inside = await contextTar(
      {
        ...busyboxContext('RUN echo inside > /i'),
        'real/Dockerfile': `FROM scratch\nADD rootfs.tar /\nRUN echo inside > /i\n`,
      },
      { df: 'real' },
    );
    const ok = await build(e, inside, { dockerfile: 'df/Dockerfile' });
    expect(await readFile(join(await unpack(e, ok.imageDigest), 'i'), 'utf8')).toBe('inside\n');
  });

  it('a .dockerignore linked out of the context is not read: a warning, nothing left out', async () => {
    const e = host('ignore-link');
    const patterns = join(work, 'host-patterns');
    await writeFile(patterns, 'keep.txt\n');
    const ctx = await contextTar(busyboxContext('COPY keep.txt /keep.txt', { 'keep.txt': 'kept\n' }), {
      '.dockerignore': patterns,
    });
    const r = await build(e, ctx);
    expect(await readFile(join(await unpack(e, r.imageDigest), 'keep.txt'), 'utf8')).toBe('kept\n');
    expect(r.logs).toMatch(
      /warning: \.dockerignore ".dockerignore" goes through a symbolic link.*not applied/,
    );
    expect(r.logs).not.toContain(work);
  });

  it('COPY <<.. and a COPY through a symlink loop fail as user errors with their line', async () => {
    const e = host('heredoc-name');
    const err: unknown = await build(e, busyboxContext('COPY <<.. /x\nhello\n..\n')).catch((x: unknown) => x);
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toMatch(/^Dockerfile:4: invalid heredoc name "\.\."/);
    const loop = await contextTar(busyboxContext('COPY loop1/x /x'), { loop1: 'loop2', loop2: 'loop1' });
    const err2: unknown = await build(e, loop).catch((x: unknown) => x);
    expect(isUserBuildError(err2)).toBe(true);
    expect((err2 as Error).message).toMatch(/^Dockerfile:4: too many levels of symbolic links/);
  });

  it('ADD of a local archive past maxAddUnpackedBytes fails naming the limit and the line', async () => {
    const e = host('add-limit', { maxAddUnpackedBytes: 64 * 1024 });
    const big = await contextTar({ 'big.bin': Buffer.alloc(256 * 1024, 7) });
    const small = await contextTar({ 'small.bin': Buffer.alloc(1024, 7) });
    const err: unknown = await build(e, {
      Dockerfile: 'FROM scratch\nADD small.tar /s/\nADD big.tar /b/\n',
      'small.tar': small,
      'big.tar': big,
    }).catch((x: unknown) => x);
    expect(isUserBuildError(err)).toBe(true);
    expect((err as Error).message).toMatch(
      /^Dockerfile:3: ADD big\.tar: the archive unpacks to more than MAX_ADD_UNPACKED_BYTES \(65536 bytes\)/,
    );
  });

  it('a RUN step past stepDiskBytes is stopped and fails naming STEP_DISK_BYTES and the line', async () => {
    const e = host('disk-limit', { stepDiskBytes: 4 * 1024 * 1024 });
    // one that ends before the watcher's first look: caught by the check at its end
    const quick: unknown = await build(e, busyboxContext('RUN head -c 8388608 /dev/zero > /big'), {
      noCache: true,
    }).catch((x: unknown) => x);
    expect(isUserBuildError(quick)).toBe(true);
    expect((quick as Error).message).toMatch(
      /^Dockerfile:\d+: RUN wrote more than .* 4194304 bytes \(STEP_DISK_BYTES\)/,
    );
    // one that would write forever: killed while it runs
    const started = Date.now();
    const endless: unknown = await build(
      e,
      busyboxContext('RUN while true; do head -c 1048576 /dev/zero >> /big; sleep 0.2; done'),
      { noCache: true },
    ).catch((x: unknown) => x);
    expect((endless as Error).message).toMatch(/STEP_DISK_BYTES/);
    expect(Date.now() - started).toBeLessThan(30_000);
    // under the limit: builds
    const ok = await build(e, busyboxContext('RUN head -c 1048576 /dev/zero > /small'), { noCache: true });
    expect(ok.steps[ok.steps.length - 1].status).toBe('done');
  });
});

describe('pipelined layer export', () => {
  // Steps on top of steps, a stage copied from another, a deletion: every kind of lower dir.
  const dockerfile = [
    'FROM scratch AS base',
    'ADD rootfs.tar /',
    'ENV PATH=/bin',
    'RUN mkdir -p /app && echo one > /app/1 && echo gone > /app/gone',
    'RUN echo two > /app/2 && rm /app/gone',
    'FROM base AS tool',
    'RUN echo tool > /tool && cat /app/1 /app/2 > /tool.in',
    'FROM base',
    'COPY --from=tool /tool /tool.in /opt/',
    'RUN ls /app > /app/listing && cat /opt/tool.in >> /app/listing',
    'WORKDIR /srv',
  ].join('\n');
  const files = (): Record<string, string | Buffer> => ({ ...busyboxContext(''), Dockerfile: dockerfile });
  const opts = { buildArgs: { SOURCE_DATE_EPOCH: '1700000000' }, noCache: true };

  it('gives the same image as storing each layer before the next step, and stores every layer', async () => {
    const serial = host('export-0', { layerExportConcurrency: 0 });
    const piped = host('export-2', { layerExportConcurrency: 2 });
    const a = await build(serial, files(), opts);
    const b = await build(piped, files(), opts);
    expect(b.imageDigest).toBe(a.imageDigest);
    // every filesystem step reports its stored layer's size, as without the pipeline
    expect(b.steps.map((s) => s.layerSize)).toEqual(a.steps.map((s) => s.layerSize));
    const image = await piped.images.load(null, b.imageDigest);
    for (const layer of image.layers) {
      expect(layer.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(await blobs.has(layer.digest as BlobDigest)).toBe(true);
      // the frozen upper dirs became the host's extracted layers: nothing to extract next time
      expect(await piped.cache.get(layer.diffId)).toBeDefined();
    }
    // nothing of the build is left in its scratch dir
    expect(await readdir(join(work, 'export-2', 'jobs'))).toEqual([]);
    const root = await unpack(piped, b.imageDigest);
    expect(await readFile(join(root, 'app', 'listing'), 'utf8')).toBe('1\n2\nlisting\none\ntwo\n');
    await expect(lstat(join(root, 'app', 'gone'))).rejects.toThrow();
  });

  it('records each step in the cache with its stored layer: a rebuild replays all and matches', async () => {
    const piped = host('export-cache', { layerExportConcurrency: 1 });
    const cold = await build(piped, files(), { buildArgs: { SOURCE_DATE_EPOCH: '1700000001' } });
    expect(statuses(cold).every((s) => s === 'done')).toBe(true);
    const warm = await build(host('export-cache-b'), files(), {
      buildArgs: { SOURCE_DATE_EPOCH: '1700000001' },
    });
    expect(statuses(warm).every((s) => s === 'cached')).toBe(true);
    expect(warm.imageDigest).toBe(cold.imageDigest);
  });
});

describe('layer cache budget', () => {
  it('trims the host layer cache after a build, and the next build re-extracts what it needs', async () => {
    const small = host('budget', { layerCacheMaxBytes: 1 });
    const body = 'RUN echo budget > /b';
    const first = await build(small, busyboxContext(body), { noCache: true });
    expect(statuses(first).every((s) => s === 'done')).toBe(true);
    expect(small.cache.totalBytes()).toBeLessThanOrEqual(1);
    const second = await build(small, busyboxContext(`${body}\nRUN cat /b > /c`));
    expect(second.steps[second.steps.length - 1].status).toBe('done');
    const root = await unpack(small, second.imageDigest);
    expect(await readFile(join(root, 'c'), 'utf8')).toBe('budget\n');
  });
});
