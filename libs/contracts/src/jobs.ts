import type { BuildNetwork } from './builds';
import { JobName } from './queues';

/** A `sha256:<hex>` content digest. */
export type Digest = `sha256:${string}`;

/** JSON-compatible by construction: payloads carry ids and digests, never file contents. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface BuildJobData {
  readonly buildId: string;
  /** Digest of the uploaded build context tar in the blob store. */
  readonly contextDigest: Digest;
  /** Path of the Dockerfile inside the context. */
  readonly dockerfile: string;
  /** `repo:tag` references to tag the result with. */
  readonly tags: string[];
  readonly buildArgs: Record<string, string>;
  readonly target: string | null;
  readonly noCache: boolean;
  /** Push tags naming another registry (`host/repo:tag`) there once the image is built. */
  readonly push?: boolean;
  /**
   * The network of RUN steps that name none (`docker build --network`); absent: the
   * operator's STEP_NETWORK_DEFAULT. `RUN --network=none|host` still wins for its step.
   */
  readonly network?: BuildNetwork;
  /** Id of the build's secrets bundle (BuildSecretStore), never the values themselves. */
  readonly secretsId?: string;
  /**
   * Named build contexts (`--build-context name=…`, as buildx): `FROM name`, `COPY --from=name`
   * and `RUN --mount=from=name` use them instead of an image or stage of that name.
   */
  readonly namedContexts?: Record<string, NamedContextSource>;
  /**
   * Platforms asked for (`linux/amd64`, normalised): the job is then the parent of one
   * `build-platform` child per platform and, once they are done, tags their image (one
   * platform) or an index of them. Absent: one image for the worker's own platform.
   */
  readonly platforms?: string[];
}

/** One platform's sub-build of a multi-platform build (a child of its `build` job). */
export interface BuildPlatformJobData extends Omit<BuildJobData, 'platforms'> {
  /** `os/arch[/variant]`, normalised. */
  readonly platform: string;
  /** Its position in the build's platform list (orders its steps in the record). */
  readonly position: number;
}

export interface BuildPlatformJobResult {
  readonly buildId: string;
  readonly platform: string;
  readonly imageDigest: Digest;
  /** Size of the image manifest (the index entry's descriptor needs it). */
  readonly manifestSize: number;
  readonly manifestMediaType: string;
}

/**
 * What a named build context is (buildx `--build-context name=<value>`): a directory the
 * client uploaded (its tar's digest), an image (`docker-image://ref`), a git repository (a git
 * URL with `#ref:subdir`), a tarball over HTTP(S), or an image from the client's OCI image
 * layout (`oci-layout://dir[:tag|@digest]`: the client uploads a layout holding only that
 * image, as a tar; `root` is the manifest or index it names).
 * https://docs.docker.com/reference/cli/docker/buildx/build/#build-context
 */
export type NamedContextSource =
  | { readonly kind: 'local'; readonly digest: Digest }
  | { readonly kind: 'oci-layout'; readonly digest: Digest; readonly root: Digest }
  | { readonly kind: 'image'; readonly ref: string }
  | { readonly kind: 'git'; readonly url: string }
  | { readonly kind: 'http'; readonly url: string };

export interface BuildJobResult {
  readonly buildId: string;
  readonly state: 'succeeded' | 'failed' | 'cancelled';
  readonly imageDigest: Digest | null;
}

export interface RunContainerJobData {
  readonly containerId: string;
}

export interface RunContainerJobResult {
  readonly containerId: string;
  readonly exitCode: number | null;
}

export interface CommitJobData {
  readonly containerId: string;
  readonly commitId: string;
  readonly repository: string;
  readonly tag: string;
  readonly message: string;
  readonly author: string;
  /** Dockerfile-style config changes, as `docker commit --change`: `CMD ["sh"]`, `ENV A=b`. */
  readonly changes: string[];
}

export interface CommitJobResult {
  readonly commitId: string;
  readonly imageDigest: Digest;
}

/** Deletes a removed container's files (upper dir) on the worker that holds them. */
export interface RemoveContainerJobData {
  readonly containerId: string;
}

export interface RemoveContainerJobResult {
  readonly containerId: string;
  /** False when the record says the container is not removed (nothing was deleted). */
  readonly removed: boolean;
}

export interface PushJobData {
  readonly pushId: string;
  readonly manifestDigest: Digest;
  /** Source repository holding the manifest. */
  readonly sourceRepository: string;
  /** Targets: `repo:tag` in our registry, or `host/repo:tag` for another registry. */
  readonly targets: string[];
}

export interface PushJobResult {
  readonly pushId: string;
  readonly pushed: string[];
}

/**
 * Tells the build's forge where its commit stands. Carries the build id only: the processor
 * reads the build's state when it sends, so a late retry never sends an older state over a
 * newer one, and the project's token is read (and opened) only there.
 */
export interface CommitStatusJobData {
  readonly buildId: string;
  /**
   * Which change asked for it (one job per build and phase). `running` sends only to GitLab,
   * whose status API has that state; GitHub and Gitea stay `pending` until the build ends.
   */
  readonly phase: 'queued' | 'running' | 'finished';
}

export interface CommitStatusJobResult {
  readonly buildId: string;
  /** What was sent (`pending`, `success`…), or null when nothing was (no token, no forge, no build). */
  readonly sent: string | null;
  readonly reason?: string;
}

/** Delivers what waits in one notification endpoint's outbox, oldest first. */
export interface NotifyJobData {
  /** The endpoint's id (a hash of its URL and project); the URL and events are in Redis. */
  readonly endpoint: string;
}

export interface NotifyJobResult {
  readonly endpoint: string;
  readonly delivered: number;
}

/** One delivery attempt of a notification, as `GET /api/v1/notifications/deliveries` lists it. */
export interface NotificationDelivery {
  readonly eventId: string;
  /** `build.succeeded`, `registry.push`… */
  readonly type: string;
  readonly url: string;
  readonly project: string | null;
  readonly ok: boolean;
  /** The receiver's HTTP status, or null when it could not be reached. */
  readonly status: number | null;
  readonly error: string | null;
  readonly at: string;
}

/** Job name -> payload: the discriminated union every producer and processor is typed by. */
export interface JobDataMap {
  [JobName.Build]: BuildJobData;
  [JobName.BuildPlatform]: BuildPlatformJobData;
  [JobName.RunContainer]: RunContainerJobData;
  [JobName.Commit]: CommitJobData;
  [JobName.RemoveContainer]: RemoveContainerJobData;
  [JobName.Push]: PushJobData;
  [JobName.CommitStatus]: CommitStatusJobData;
  [JobName.Notify]: NotifyJobData;
}

export interface JobResultMap {
  [JobName.Build]: BuildJobResult;
  [JobName.BuildPlatform]: BuildPlatformJobResult;
  [JobName.RunContainer]: RunContainerJobResult;
  [JobName.Commit]: CommitJobResult;
  [JobName.RemoveContainer]: RemoveContainerJobResult;
  [JobName.Push]: PushJobResult;
  [JobName.CommitStatus]: CommitStatusJobResult;
  [JobName.Notify]: NotifyJobResult;
}

export type AnyJob = { [K in JobName]: { name: K; data: JobDataMap[K] } }[JobName];
