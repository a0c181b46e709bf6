import { defaultRuntimePath } from '@stratum/config';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { BuildEngine, BuildEngineOptions, RedisBuildCacheIndex } from '@stratum/engine';
import { RuncRuntime } from '@stratum/runtime';
import { FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { RedisServerHandle, startRedisServer } from './redis-server';

/**
 * What BuildEngine integration tests run on: a scratch directory, a real redis-server (the step
 * cache index) and a filesystem blob and repository store below the scratch directory.
 */
export interface EngineTestBed {
  readonly work: string;
  readonly redis: Redis;
  readonly blobs: FsBlobStore;
  readonly repositories: FsRepositoryStore;
  /**
   * One worker host: real runc (state, bundles), jobs dir, layer cache and run cache below
   * `dir` (default: the scratch directory); the blob store and Redis are shared by all hosts.
   */
  engine(dir?: string, extra?: Partial<BuildEngineOptions>): BuildEngine;
  /** Mount targets (of `type`, or any type) below the scratch directory. */
  mounts(type?: string): string[];
  /** Disconnects, stops redis-server and removes the scratch directory. */
  stop(): Promise<void>;
}

/** Starts redis-server and makes the scratch directory `stratum-<name>-*` and the stores. */
export async function startEngineTestBed(name: string): Promise<EngineTestBed> {
  const work = await mkdtemp(join(tmpdir(), `stratum-${name}-`));
  let redisServer: RedisServerHandle;
  try {
    redisServer = await startRedisServer();
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  const cgroupParent = `/stratum-test-${name}-${process.pid}`;
  const blobs = new FsBlobStore(join(work, 'store'));
  const repositories = new FsRepositoryStore(join(work, 'store'));
  return {
    work,
    redis,
    blobs,
    repositories,
    engine: (dir = work, extra = {}) =>
      new BuildEngine({
        blobs,
        repositories,
        runtime: new RuncRuntime({
          runcPath: defaultRuntimePath(),
          stateRoot: join(dir, 'runc'),
          bundleDir: join(dir, 'bundles'),
          cgroupParent,
        }),
        jobsDir: join(dir, 'jobs'),
        layerCacheDir: join(dir, 'layers'),
        runCacheDir: join(dir, 'run-cache'),
        stepTimeoutMs: 60_000,
        cacheIndex: new RedisBuildCacheIndex(redis),
        ...extra,
      }),
    mounts: (type) => mountTargetsUnder(work, type),
    stop: async () => {
      redis.disconnect();
      await redisServer.stop();
      await rm(work, { recursive: true, force: true });
      await removeCgroupTree(cgroupParent);
    },
  };
}

/** Removes `parent` and the (empty) cgroups below it, the runtimes' slots, in every hierarchy. */
async function removeCgroupTree(parent: string): Promise<void> {
  const root = '/sys/fs/cgroup';
  const hierarchies = [root, ...(await readdir(root)).map((c) => join(root, c))];
  for (const hierarchy of hierarchies) {
    const dir = join(hierarchy, parent);
    const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const child of children.filter((d) => d.isDirectory())) {
      await rmdir(join(dir, child.name)).catch(() => undefined);
    }
    await rmdir(dir).catch(() => undefined);
  }
}

/** Mount targets (of `type`, or any type) below `dir`, from findmnt. */
export function mountTargetsUnder(dir: string, type?: string): string[] {
  const args = ['-rn', ...(type !== undefined ? ['-t', type] : []), '-o', 'TARGET'];
  let out: string;
  try {
    out = execFileSync('findmnt', args, { encoding: 'utf8' });
  } catch {
    return []; // findmnt exits 1 when nothing matches
  }
  return out.split('\n').filter((t) => t === dir || t.startsWith(`${dir}/`));
}
