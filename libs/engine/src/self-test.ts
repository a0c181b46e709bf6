import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BuildJobData, Digest } from '@stratum/contracts';
import { runHostCommand, unmountAllUnder } from '@stratum/layers';
import { FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { encodeHeader, END_OF_ARCHIVE, padding, type EncodableHeader } from '@stratum/tar';
import { MemoryBuildCacheIndex } from './build-cache';
import type { BuildEngine } from './build-engine';
import { BuildReporter } from './build-reporter';

/**
 * The self-test's Dockerfile: what most builds do — ADD a root filesystem, ENV, ARG, LABEL,
 * RUN (with the operator's default network once, then without), COPY, WORKDIR, USER, CMD.
 */
export const SELF_TEST_DOCKERFILE = `FROM scratch
ADD rootfs.tar /
ENV PATH=/bin HOME=/root
ARG GREETING=hello
LABEL org.opencontainers.image.title="stratum self-test"
RUN mkdir -p /app/a /app/b && echo "$GREETING" > /app/a/1 && rm -rf /app/b
COPY src/ /app/src/
WORKDIR /app
RUN --network=none ls -l /app/src > listing && ln -s listing listing.link && rm /app/a/1
USER 65534:65534
RUN --network=none id > /tmp/id
CMD ["cat", "/app/listing"]
`;

/** busybox applets the self-test's root filesystem links (what the Dockerfile runs, and more). */
const APPLETS = (
  'sh ash cat chmod chown cp date echo env false find grep gzip head id ln ls mkdir mktemp mv printf pwd ' +
  'rm rmdir sed seq sleep sort stat tail tar tee test touch tr true uname uniq wc wget which xargs yes'
).split(' ');

export interface SelfTestResult {
  /** The image the private engine wrote (in its private store, removed afterwards). */
  readonly imageDigest: Digest;
  /** Steps the build ran (none cached: its caches are empty). */
  readonly steps: number;
  readonly ms: number;
}

/**
 * Builds {@link SELF_TEST_DOCKERFILE} with a private engine at a worker's start-up: the
 * worker's runtime, user namespace and limits, but a blob store, registry, layer cache and
 * step cache of its own in `dir` (removed afterwards; a tmpfs mounted there), so that nothing
 * of it is seen outside. Two ends: a worker whose runtime, overlay mounts or layer export cannot
 * build finds out before it takes a job (the caller logs it), and the build path's code has
 * run once. V8 compiles and optimises functions as they run: a fresh worker's first cold
 * `steps` build used ~100 ms more of its main thread than its second (363 ms against 264 ms),
 * most of it in the tar reader and writer, the runtime, the layer export and the record store.
 * Null when `busybox` (a static busybox, Debian's busybox-static) is missing.
 */
export async function selfTestBuild(
  worker: BuildEngine,
  dir: string,
  { busybox = '/bin/busybox', signal }: { busybox?: string; signal?: AbortSignal } = {},
): Promise<SelfTestResult | null> {
  if (!existsSync(busybox)) {
    return null;
  }
  const started = performance.now();
  await clearDir(dir);
  // A tmpfs of its own: its files are made in memory and go at once at the end, where on the
  // data dir's ext4 each deletion would slow the next file creations there. Mode 0711: the
  // steps' root (a mapped uid) passes through to its overlay, as it does in the scratch dir.
  await runHostCommand('mount', [
    '-t',
    'tmpfs',
    '-o',
    `size=${SELF_TEST_TMPFS_BYTES},mode=0711,nosuid`,
    'tmpfs',
    dir,
  ]);
  let engine: BuildEngine | undefined;
  try {
    const store = join(dir, 'store');
    const blobs = new FsBlobStore(store);
    await blobs.init();
    engine = worker.derive({
      blobs,
      repositories: new FsRepositoryStore(store),
      cache: undefined,
      layerCacheDir: join(dir, 'layer-cache'),
      runCacheDir: join(dir, 'run-cache'),
      jobsDir: join(dir, 'jobs'),
      cacheIndex: new MemoryBuildCacheIndex(),
      remoteImages: undefined,
    });
    const context = await blobs.put(Readable.from([selfTestContext(readFileSync(busybox))]));
    let steps = 0;
    const reporter: BuildReporter = {
      log: () => undefined,
      step: (s) => {
        steps = Math.max(steps, s.index + 1);
        return Promise.resolve();
      },
    };
    const data: BuildJobData = {
      buildId: `self-test-${randomBytes(6).toString('hex')}`,
      contextDigest: context.digest,
      dockerfile: 'Dockerfile',
      tags: ['stratum/self-test:latest'],
      buildArgs: {},
      target: null,
      noCache: false,
    };
    const outcome = await engine.build(data, { signal: signal ?? new AbortController().signal, reporter });
    return { imageDigest: outcome.imageDigest, steps, ms: Math.round(performance.now() - started) };
  } finally {
    // the last step's container is torn down in the background (a failed build's too): gone
    // before its dir is
    await engine?.settled().catch(() => undefined);
    await clearDir(dir, false);
  }
}

/** Size of the self-test's tmpfs: its busybox (2 MB) is in the context, a layer, a blob and a cache. */
const SELF_TEST_TMPFS_BYTES = 256 * 1024 * 1024;

/** Unmounts whatever is mounted at or below `dir` (deepest first), then removes it; remade when `remake`. */
async function clearDir(dir: string, remake = true): Promise<void> {
  await unmountAllUnder(dir);
  await rm(dir, { recursive: true, force: true });
  if (remake) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  }
}

/** The self-test's build context: its Dockerfile, a busybox root filesystem tar and a few sources. */
function selfTestContext(busybox: Buffer): Buffer {
  const dir = (path: string, mode = 0o755): TarFile => ({ header: { path, type: 'dir', mode } });
  const file = (path: string, content: Buffer | string, mode = 0o644): TarFile => ({
    header: { path, type: 'file', mode },
    content: typeof content === 'string' ? Buffer.from(content) : content,
  });
  const link = (path: string, linkpath: string): TarFile => ({
    header: { path, type: 'symlink', mode: 0o777, linkpath },
  });
  const rootfs = tarOf([
    dir('bin/'),
    file('bin/busybox', busybox, 0o755),
    ...APPLETS.map((a) => link(`bin/${a}`, 'busybox')),
    dir('etc/'),
    file(
      'etc/passwd',
      'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    ),
    file('etc/group', 'root:x:0:\nnogroup:x:65534:\n'),
    dir('root/', 0o700),
    dir('tmp/', 0o1777),
  ]);
  return tarOf([
    file('Dockerfile', SELF_TEST_DOCKERFILE),
    file('rootfs.tar', rootfs),
    dir('src/'),
    file('src/a.txt', 'one\n'),
    file('src/b.txt', 'two\nthree\n'),
    dir('src/sub/'),
    file('src/sub/c.txt', 'four\n'),
  ]);
}

interface TarFile {
  readonly header: Omit<EncodableHeader, 'size' | 'mtime' | 'linkpath'> & { linkpath?: string };
  readonly content?: Buffer;
}

/** A plain tar of `entries`, in memory (mtime 0, root-owned). */
function tarOf(entries: readonly TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const { header, content } of entries) {
    const size = content?.length ?? 0;
    parts.push(encodeHeader({ linkpath: '', ...header, size, mtime: 0, uid: 0, gid: 0 }));
    if (content !== undefined) {
      parts.push(content, Buffer.alloc(padding(size)));
    }
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}
