import type { GitTransport } from '@stratum/git';
import { Digest } from '@stratum/contracts';
import { Platform } from '@stratum/oci';
import { IdMap, LayerCache } from '@stratum/layers';
import { RuncRuntime } from '@stratum/runtime';
import { BlobStore, RepositoryStore } from '@stratum/storage';
import { BuildCacheIndex } from './build-cache';
import { BuildReporter } from './build-reporter';

/**
 * Pulls an image from another registry into our storage (libs/registry's RemoteImageResolver):
 * that registry's mirrors in order, then the registry itself. When nothing has it, `resolve`
 * throws an error carrying `attempts` (each place tried and why it gave nothing).
 */
export interface RemoteImageSource {
  /** Registry of unqualified names our registry lacks (`docker.io`); null: they mean ours only. */
  readonly defaultRegistry: string | null;
  /**
   * True for an unqualified name in a pull-through mirror's repository (REGISTRY_MIRRORS): it is
   * resolved here, not taken from our registry as is (the mirror may hold a manifest whose blobs
   * were never fetched).
   */
  isPullThrough(reference: string): boolean;
  /** The image of `reference` for `platform` (its entry when the reference names an index). */
  resolve(reference: string, platform: Platform, signal?: AbortSignal): Promise<RemoteImage>;
}

/** What {@link RemoteImageSource.resolve} brought, and from where (said in the build log). */
export interface RemoteImage {
  readonly repository: string;
  readonly manifestDigest: Digest;
  /** With the registry filled in: `docker.io/library/busybox:latest`. */
  readonly reference: string;
  /** `stored`: pulled before, found in `repository` without asking anyone. */
  readonly source: 'stored' | 'mirror' | 'registry';
  /** The mirror's or registry's URL; null when stored. */
  readonly endpoint: string | null;
  /** Places tried first that were down or lacked it. */
  readonly failed: readonly { readonly place: string; readonly error: string }[];
}

export interface BuildEngineOptions {
  readonly blobs: BlobStore;
  readonly repositories: RepositoryStore;
  readonly runtime: RuncRuntime;
  /** Per-build scratch dirs live here (`<jobsDir>/<buildId>`). */
  readonly jobsDir: string;
  /** The host's extracted-layer cache, shared with everything else mounting layers on this host. */
  readonly cache?: LayerCache;
  /** Where the engine makes its own layer cache when none is given. */
  readonly layerCacheDir: string;
  /**
   * Root of `RUN --mount=type=cache` directories, one per hashed id, and nothing else
   * (default: `run-cache` beside `layerCacheDir`).
   */
  readonly runCacheDir?: string;
  /**
   * After each build the cache mount directories are trimmed to this (LRU, unused ones only);
   * a cache mount's `from` seed larger than it is refused. Default 10 GiB.
   */
  readonly runCacheMaxBytes?: number;
  readonly stepTimeoutMs: number;
  /** Memory limit of each RUN step (default 4 GiB): a hog is killed, the worker lives on. */
  readonly stepMemoryBytes?: number;
  /** Bytes one RUN step may write to its layer (default 64 GiB): past it the step is killed. */
  readonly stepDiskBytes?: number;
  /** Process limit of each RUN step (default 4096): a fork bomb is contained. */
  readonly stepPidsLimit?: number;
  /**
   * Run each RUN step in a user namespace with this uid range (USERNS_REMAP): its root is an
   * unprivileged user on the host; its layers and mount sources are idmapped so the step sees,
   * and its layer records, the in-image owners. Unset: steps run as the host's root.
   */
  readonly userns?: IdMap;
  /** After each build the layer cache is trimmed to this (LRU, unused layers only). Default 50 GiB. */
  readonly layerCacheMaxBytes?: number;
  /** Allow `RUN --network=host` (default false: the host network reaches the worker's Redis). */
  readonly allowHostNetwork?: boolean;
  /** Allow the sandboxed network (default true); off, a step without a network of its own gets `none`. */
  readonly allowSandboxNetwork?: boolean;
  /** The network of a RUN step that neither the build nor the Dockerfile chooses. Default `sandbox`. */
  readonly stepNetworkDefault?: 'sandbox' | 'none';
  /** Largest build context, unpacked (MAX_CONTEXT_BYTES); unlimited when unset. */
  readonly maxContextBytes?: number;
  /** What the local archives of one ADD may unpack to (MAX_ADD_UNPACKED_BYTES); unlimited when unset. */
  readonly maxAddUnpackedBytes?: number;
  /**
   * Git sources (`ADD <git url>`, git named contexts): the transports allowed (ADD_GIT_SCHEMES;
   * `file` for tests only), each git command's time limit, the disk one checkout may take.
   * Default: https and ssh, 300 s, 2 GiB. `sshKnownHosts` (ADD_GIT_SSH_KNOWN_HOSTS, a known_hosts
   * file's text) lists the ssh servers a git source may be fetched from: an ssh host not in it, or
   * whose key differs, is refused. Default: none, so ssh git sources fail until it is set.
   */
  readonly gitSources?: {
    readonly transports: readonly GitTransport[];
    readonly timeoutMs: number;
    readonly maxBytes: number;
    readonly sshKnownHosts?: string;
  };
  /** Most entries of a build context (MAX_CONTEXT_ENTRIES); unlimited when unset. */
  readonly maxContextEntries?: number;
  readonly compression?: 'gzip' | 'zstd';
  /**
   * Layers one build stores at once beside its steps (LAYER_EXPORT_CONCURRENCY, default 2): a
   * step's upper dir is stacked under the next step as soon as it is frozen, and its layer is
   * tarred, compressed, hashed and stored meanwhile. 0: each step stores its layer before the
   * next starts.
   */
  readonly layerExportConcurrency?: number;
  /**
   * The step cache index. Share one (Redis) between worker hosts so they reuse each other's
   * layers; default: an in-process index, which only this engine sees.
   */
  readonly cacheIndex?: BuildCacheIndex;
  /**
   * Fetches images that name another registry (`FROM registry.example.com/team/base:1`), and
   * unqualified ones our registry lacks (`FROM alpine`: its default registry), into our storage.
   * Without it such a FROM fails with a clear error and unqualified names mean our registry only.
   */
  readonly remoteImages?: RemoteImageSource;
  /**
   * This host's own platform (`linux/amd64`): BUILDPLATFORM, and the target of a build that
   * names none. Default linux/amd64.
   */
  readonly nativePlatform?: string;
  /**
   * Platforms whose RUN steps this host can run (native and binfmt-emulated); a RUN in a stage
   * of another platform fails naming it. Default: the native platform only.
   */
  readonly runnablePlatforms?: readonly string[];
}

export interface BuildRunContext {
  readonly signal: AbortSignal;
  readonly reporter: BuildReporter;
  /**
   * Build secrets by id (`RUN --mount=type=secret`): materialised on a tmpfs per step and
   * masked in the log; never part of a key, a layer or the image.
   */
  readonly secrets?: ReadonlyMap<string, Buffer>;
  /** The platform to build for (`linux/arm64`, normalised); default the engine's native one. */
  readonly platform?: string;
  /** Link the image into the tags' repositories without tagging it (a multi-platform child). */
  readonly untagged?: boolean;
  /** Private keys by ssh id (`RUN --mount=type=ssh`): served by an agent per step, never in a key or a layer. */
  readonly ssh?: ReadonlyMap<string, readonly Buffer[]>;
  /**
   * Called with the outcome once the image is written, before the build's cleanup (the steps'
   * container teardown, the job dir's removal, the cache trims, 8-11 ms of a small build):
   * the caller reports the result without waiting for it. `build` resolves after both; a
   * failure here fails it (after the cleanup).
   */
  readonly onImage?: (outcome: BuildOutcome) => Promise<void>;
}

export interface BuildOutcome {
  readonly imageDigest: Digest;
  readonly configDigest: Digest;
  readonly manifestSize: number;
}
