import { readFileSync } from 'node:fs';
import { DynamicModule, Module } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BuildEngine, RemoteImageSource, RedisBuildCacheIndex } from '@stratum/engine';
import { ConfigModule, STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { JobsModule, REDIS, StoreProbeModule } from '@stratum/jobs';
import { LayerCache } from '@stratum/layers';
import { ImageTransfer, RegistryClients, RemoteImageResolver } from '@stratum/registry';
import { RuncRuntime } from '@stratum/runtime';
import { BLOB_STORE, BlobStore, REPOSITORY_STORE, RepositoryStore, StorageModule } from '@stratum/storage';
import { BuildPlatformProcessor, BuildProcessor } from './build.processor';
import {
  CommitProcessor,
  ContainersWorkerModule,
  RemoveContainerProcessor,
  RunContainerProcessor,
} from './containers/containers-worker.module';
import { DeathWatch } from './death-watch';
import { OldAttemptCheck } from './old-attempt-check';
import { HostSweeper, workerPaths } from './host-sweeper';
import { JOB_HANDLERS, JobHandler, WORKER_ID } from './job-handler';
import { PushProcessor } from './push/push.processor';
import { PushWorkerModule } from './push/push-worker.module';
import { QueueWorkersService } from './queue-workers.service';
import { WorkerPlatforms } from './worker-platforms';
import { StepUserns } from './step-userns';

@Module({})
export class WorkerModule {
  static forRoot(config: StratumConfig): DynamicModule {
    const paths = workerPaths(config);
    return {
      module: WorkerModule,
      // Global so the feature modules it imports (containers) inject the host's one RuncRuntime
      // and one LayerCache: a LayerCache must be the only instance on its root (it wipes tmp/
      // at init and counts leases in memory).
      global: true,
      imports: [
        ConfigModule.forRoot(config),
        StorageModule,
        JobsModule.forRoot(),
        // Refuses to start when this process does not see the store the others use.
        StoreProbeModule.forRoot('worker'),
        ContainersWorkerModule,
        PushWorkerModule,
      ],
      providers: [
        {
          provide: RuncRuntime,
          useFactory: () =>
            new RuncRuntime({
              runcPath: config.runtimePath,
              stateRoot: paths.runcRoot,
              bundleDir: paths.bundles,
              seccompProfile: config.seccompProfile,
              // the next sandboxed step's network is made while one runs (ended at shutdown)
              sandboxSpare: config.allowSandboxNetwork,
            }),
        },
        { provide: LayerCache, useFactory: () => new LayerCache(paths.layerCache) },
        // Native + binfmt handlers (F flag), restricted by WORKER_PLATFORMS: a bad one fails the boot.
        { provide: WorkerPlatforms, useFactory: () => WorkerPlatforms.detect(config) },
        // USERNS_REMAP, probed on this host: a range it cannot give fails the boot.
        { provide: StepUserns, useFactory: () => StepUserns.detect(config, paths) },
        {
          provide: BuildEngine,
          inject: [
            BLOB_STORE,
            REPOSITORY_STORE,
            RuncRuntime,
            LayerCache,
            STRATUM_CONFIG,
            REDIS,
            WorkerPlatforms,
            StepUserns,
          ],
          useFactory: (
            blobs: BlobStore,
            repositories: RepositoryStore,
            runtime: RuncRuntime,
            cache: LayerCache,
            c: StratumConfig,
            redis: Redis,
            platforms: WorkerPlatforms,
            userns: StepUserns,
          ) =>
            new BuildEngine({
              nativePlatform: platforms.native,
              runnablePlatforms: platforms.runnable,
              blobs,
              repositories,
              runtime,
              cache,
              jobsDir: paths.jobs,
              layerCacheDir: paths.layerCache,
              runCacheDir: paths.runCache,
              stepTimeoutMs: c.stepTimeoutSeconds * 1000,
              stepMemoryBytes: c.stepMemoryBytes,
              stepDiskBytes: c.stepDiskBytes,
              layerExportConcurrency: c.layerExportConcurrency,
              stepPidsLimit: c.stepPidsLimit,
              ...(userns.map !== null ? { userns: userns.map } : {}),
              allowHostNetwork: c.allowHostNetwork,
              allowSandboxNetwork: c.allowSandboxNetwork,
              stepNetworkDefault: c.stepNetworkDefault,
              maxContextBytes: c.maxContextBytes,
              maxAddUnpackedBytes: c.maxAddUnpackedBytes,
              gitSources: {
                transports: c.addGit.schemes,
                timeoutMs: c.addGit.timeoutSeconds * 1000,
                maxBytes: c.addGit.maxBytes,
                // read once at boot: a missing file stops the worker here, not a build later
                ...(c.addGit.sshKnownHostsFile !== null
                  ? { sshKnownHosts: readFileSync(c.addGit.sshKnownHostsFile, 'utf8') }
                  : {}),
              },
              maxContextEntries: c.maxContextEntries,
              layerCacheMaxBytes: c.layerCacheMaxBytes,
              runCacheMaxBytes: c.runCacheMaxBytes,
              // shared by every worker host, like the layers it names (blob store)
              cacheIndex: new RedisBuildCacheIndex(redis),
              // FROM another registry, or an unqualified name ours lacks (DEFAULT_REGISTRY): pulled
              // through the registry client (PULL_MIRRORS first) into our storage.
              remoteImages: adaptResolver(
                new RemoteImageResolver(
                  new ImageTransfer(blobs, repositories),
                  new RegistryClients(c.registryClients),
                  c.registryClients,
                ),
              ),
            }),
        },
        { provide: WORKER_ID, useValue: config.worker.id },
        HostSweeper,
        DeathWatch,
        OldAttemptCheck,
        BuildProcessor,
        BuildPlatformProcessor,
        {
          provide: JOB_HANDLERS,
          inject: [
            BuildProcessor,
            BuildPlatformProcessor,
            RunContainerProcessor,
            CommitProcessor,
            RemoveContainerProcessor,
            PushProcessor,
          ],
          useFactory: (...handlers: JobHandler[]) => handlers,
        },
        QueueWorkersService,
      ],
      exports: [RuncRuntime, LayerCache],
    };
  }
}

/** The engine's view of the resolver: the stage's platform, manifest digest typed. */
function adaptResolver(resolver: RemoteImageResolver): RemoteImageSource {
  return {
    defaultRegistry: resolver.unqualifiedRegistry,
    isPullThrough: (reference) => resolver.servesPullThrough(reference),
    resolve: (reference, platform, signal) => resolver.resolve(reference, platform, signal),
  };
}
