import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  BuildPage,
  BuildRecord,
  BuildSource,
  BuildState,
  BuildTrigger,
  Digest,
  isTerminalBuildState,
  NamedContextSource,
  StratumError,
} from '@stratum/contracts';
import { exportFilesystem, exportOciLayout, ImageService } from '@stratum/images';
import {
  BuildProducer,
  BuildRecordStore,
  BuildSecretStore,
  BuildStats,
  buildStats,
  StoredBuildEvent,
  WorkerRegistry,
} from '@stratum/jobs';
import { checkDockerfile, CheckResult, DOCKERFILE_LIMITS } from '@stratum/dockerfile';
import { parseReference } from '@stratum/oci';
import { mirrorWriteConflict, pushSubmitterOptions } from '@stratum/registry';
import { BLOB_STORE, BlobStore } from '@stratum/storage';
import { parseNamedContexts } from './named-contexts';
import {
  BuildContextStored,
  BuildSecretsBodySchema,
  BuildSecretsCreated,
  BuildSubmitted,
  BuildStatsQuery,
  CheckDockerfileQuery,
  ListBuildsQuery,
  SubmitBuildQuery,
} from './builds.dto';
import { inspectContext, normalizeContextPath } from '../common/tar-upload';

@Injectable()
export class BuildsService {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    private readonly records: BuildRecordStore,
    private readonly producer: BuildProducer,
    private readonly secrets: BuildSecretStore,
    private readonly images: ImageService,
    private readonly workers: WorkerRegistry,
  ) {}

  /**
   * PLATFORM_UNAVAILABLE naming each asked-for platform no live worker builds for: such a build
   * would wait forever on its platform's queue, so it is refused at once.
   */
  private async checkPlatforms(platforms: readonly string[] | undefined): Promise<void> {
    if (platforms === undefined) {
      return;
    }
    const served = await this.workers.platforms();
    const missing = platforms.filter((p) => !served.has(p));
    if (missing.length > 0) {
      throw new StratumError(
        'PLATFORM_UNAVAILABLE',
        `no worker can build for ${missing.join(', ')} (the live workers build for ${
          served.size > 0 ? [...served].sort().join(', ') : 'nothing: none is running'
        }; a worker runs a foreign platform once a qemu binfmt handler with the F flag is registered: infra/setup-binfmt.sh)`,
      );
    }
  }

  /**
   * What `--output` hands back of a succeeded build (docker buildx build --output): `tar` is
   * the final stage's filesystem (the CLI unpacks it for type=local), `oci` the image as an OCI
   * image layout tar. Streamed from the stored layers; nothing is kept on the API host.
   */
  async output(id: string, type: 'tar' | 'oci', signal: AbortSignal): Promise<AsyncIterable<Buffer>> {
    const record = await this.get(id);
    if (record.state !== BuildState.Succeeded || record.imageDigest === null) {
      throw new StratumError(
        'BAD_REQUEST',
        `build ${id} is ${record.state}: only a succeeded build has an output`,
      );
    }
    const image = await this.images.load(null, record.imageDigest);
    if (type === 'tar') {
      return exportFilesystem(this.blobs, image.layers, signal);
    }
    const tag = record.tags[0];
    let name: { full: string; tag: string } | null = null;
    if (tag !== undefined) {
      const ref = parseReference(tag);
      name = { full: tag, tag: ref.tag ?? 'latest' };
    }
    return exportOciLayout(this.blobs, image, name);
  }

  /** The build's named contexts, checked (an uploaded one must be stored); null when none. */
  private async namedContexts(query: SubmitBuildQuery): Promise<Record<string, NamedContextSource> | null> {
    const named = parseNamedContexts(query.buildcontexts ?? {}, this.config.addGit.schemes);
    for (const [name, source] of Object.entries(named)) {
      if (
        (source.kind === 'local' || source.kind === 'oci-layout') &&
        !(await this.blobs.has(source.digest))
      ) {
        throw new StratumError(
          'CONTEXT_MISSING',
          `named context ${name}: ${source.digest} is not stored (send its tar to POST /api/v1/builds/contexts first)`,
        );
      }
    }
    return Object.keys(named).length > 0 ? named : null;
  }

  /**
   * Stores the tar of a named context (`--build-context name=DIR`): checked as a build
   * context is (a plain tar within MAX_CONTEXT_BYTES and MAX_CONTEXT_ENTRIES), no Dockerfile.
   */
  async putContext(body: Readable, declaredLength: number | null): Promise<BuildContextStored> {
    if (declaredLength !== null && declaredLength > this.config.maxContextBytes) {
      body.resume();
      throw new StratumError(
        'CONTEXT_TOO_LARGE',
        `named context of ${declaredLength} bytes is larger than the limit of ${this.config.maxContextBytes} bytes`,
      );
    }
    const { bytes, summary } = inspectContext(body, this.config.maxContextBytes, {
      maxEntries: this.config.maxContextEntries,
    });
    const [put, contents] = await Promise.allSettled([
      this.blobs.put(bytes, { maxBytes: this.config.maxContextBytes }),
      summary,
    ]);
    if (contents.status === 'rejected' || put.status === 'rejected') {
      if (put.status === 'fulfilled' && put.value.created) {
        await this.blobs.delete(put.value.digest).catch(() => undefined);
      }
      throw contents.status === 'rejected' ? contents.reason : (put as PromiseRejectedResult).reason;
    }
    return { digest: put.value.digest, size: put.value.size };
  }

  private async checkSecrets(query: SubmitBuildQuery): Promise<void> {
    if (query.secrets !== undefined && !(await this.secrets.exists(query.secrets))) {
      throw new StratumError(
        'BAD_REQUEST',
        `secrets ${query.secrets} are unknown or expired (a bundle serves one build, for at most a day): send them again`,
      );
    }
  }

  /** Seals a build's secrets in Redis (AES-GCM under AUTH_SECRET) and returns their bundle's id. */
  /**
   * BuildKit's build checks over a Dockerfile, without building (`docker build --check`):
   * the warnings with their lines; a file that does not parse is a DOCKERFILE_* error (400).
   */
  async check(body: AsyncIterable<Buffer>, query: CheckDockerfileQuery): Promise<CheckResult> {
    const max = DOCKERFILE_LIMITS.maxDockerfileLength;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.length;
      if (size > max) {
        throw new StratumError('DOCKERFILE_INVALID', `the Dockerfile is larger than ${max} bytes`);
      }
      chunks.push(chunk);
    }
    return checkDockerfile(Buffer.concat(chunks).toString('utf8'), {
      buildArgs: query.buildargs,
      ...(query.target !== undefined ? { target: query.target } : {}),
    });
  }

  async putSecrets(body: unknown): Promise<BuildSecretsCreated> {
    const parsed = BuildSecretsBodySchema.safeParse(body);
    if (!parsed.success) {
      throw new StratumError(
        'BAD_REQUEST',
        `expected {"secrets": {"<id>": "<base64 value>"}, "ssh": {"<id>": ["<base64 private key>"]}}: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
      );
    }
    const values = new Map(
      Object.entries(parsed.data.secrets).map(([k, v]) => [k, Buffer.from(v, 'base64')]),
    );
    const ssh = new Map(
      Object.entries(parsed.data.ssh).map(([k, v]) => [k, v.map((b) => Buffer.from(b, 'base64'))]),
    );
    return { secretsId: await this.secrets.put(values, ssh) };
  }

  /**
   * Streams the context into the blob store while checking it is a tar that holds the
   * Dockerfile, then records the build and enqueues its job. On any failure the context blob
   * this request created is removed again, so a refused request leaves nothing behind.
   */
  async submit(
    body: Readable,
    declaredLength: number | null,
    query: SubmitBuildQuery,
  ): Promise<BuildSubmitted> {
    checkTags(query.t, query.push, this.config);
    checkNetwork(query.network, this.config);
    try {
      await this.checkPlatforms(query.platform);
      await this.checkSecrets(query);
      await this.namedContexts(query);
    } catch (err) {
      body.resume(); // before the context is read: nothing to store or remove
      throw err;
    }
    if (query.context !== undefined) {
      body.resume();
      return this.submitByDigest(query.context as Digest, query);
    }
    if (declaredLength !== null && declaredLength > this.config.maxContextBytes) {
      body.resume();
      throw new StratumError(
        'CONTEXT_TOO_LARGE',
        `build context of ${declaredLength} bytes is larger than the limit of ${this.config.maxContextBytes} bytes`,
      );
    }
    const dockerfile = normalizeContextPath(query.dockerfile);
    const { bytes, summary } = inspectContext(body, this.config.maxContextBytes, {
      maxEntries: this.config.maxContextEntries,
      keepPath: (p) => p === dockerfile,
    });
    // Wait for both, even when one fails early: a blob this request created is removed only
    // after the store has finished writing it.
    const [put, contents] = await Promise.allSettled([
      this.blobs.put(bytes, { maxBytes: this.config.maxContextBytes }),
      summary,
    ]);
    const discard = async (): Promise<void> => {
      if (put.status === 'fulfilled' && put.value.created) {
        await this.blobs.delete(put.value.digest).catch(() => undefined);
      }
    };
    if (contents.status === 'rejected' || put.status === 'rejected') {
      await discard();
      // Prefer the inspection's error (too large, not a tar) over the store's echo of it.
      throw contents.status === 'rejected' ? contents.reason : (put as PromiseRejectedResult).reason;
    }
    if (!contents.value.paths.has(dockerfile)) {
      await discard();
      throw new StratumError(
        'DOCKERFILE_MISSING',
        `the build context has no Dockerfile at "${query.dockerfile}" (use ?dockerfile= to name another path)`,
      );
    }
    try {
      return await this.createBuild(put.value.digest, put.value.size, dockerfile, query);
    } catch (err) {
      await discard();
      throw err;
    }
  }

  /**
   * A build of a context the client uploaded before (`?context=<digest>`): no upload when the
   * store still has it; CONTEXT_MISSING (the client then sends the tar) when it does not.
   */
  private async submitByDigest(digest: Digest, query: SubmitBuildQuery): Promise<BuildSubmitted> {
    const st = await this.blobs.stat(digest);
    if (!st.exists) {
      throw new StratumError(
        'CONTEXT_MISSING',
        `the build context ${digest} is not stored: send it as the body`,
      );
    }
    if (st.size > this.config.maxContextBytes) {
      throw new StratumError(
        'CONTEXT_TOO_LARGE',
        `build context ${digest} of ${st.size} bytes is larger than the limit of ${this.config.maxContextBytes} bytes`,
      );
    }
    return this.createBuild(digest, st.size, normalizeContextPath(query.dockerfile), query);
  }

  /**
   * Creates a build from a context blob already in the store (git triggers, scheduled
   * rebuilds): the caller has checked that the context holds the Dockerfile.
   */
  async submitStored(
    contextDigest: Digest,
    contextSize: number,
    query: SubmitBuildQuery,
    source: BuildSource,
  ): Promise<BuildSubmitted> {
    checkTags(query.t, query.push, this.config);
    checkNetwork(query.network, this.config);
    await this.checkPlatforms(query.platform);
    return this.createBuild(
      contextDigest,
      contextSize,
      normalizeContextPath(query.dockerfile),
      query,
      source,
    );
  }

  private async createBuild(
    contextDigest: Digest,
    contextSize: number,
    dockerfile: string,
    query: SubmitBuildQuery,
    source: BuildSource = API_SOURCE,
    named?: Record<string, NamedContextSource> | null,
  ): Promise<BuildSubmitted> {
    await this.checkSecrets(query);
    const namedContexts = named !== undefined ? named : await this.namedContexts(query);
    const id = randomUUID();
    const record: BuildRecord = {
      id,
      state: BuildState.Queued,
      contextDigest,
      contextSize,
      dockerfile,
      tags: query.t,
      buildArgs: query.buildargs,
      target: query.target ?? null,
      noCache: query.nocache,
      ...(query.network !== undefined ? { network: query.network } : {}),
      ...(namedContexts !== null ? { namedContexts } : {}),
      ...(query.platform !== undefined ? { platforms: query.platform } : {}),
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      steps: [],
      imageDigest: null,
      pushId: null,
      error: null,
      attempts: 0,
      source,
    };
    await this.records.create(record, { type: 'state', state: BuildState.Queued, at: record.createdAt });
    await this.producer.submit({
      buildId: id,
      contextDigest,
      dockerfile,
      tags: query.t,
      buildArgs: query.buildargs,
      target: query.target ?? null,
      noCache: query.nocache,
      push: query.push,
      ...(query.network !== undefined ? { network: query.network } : {}),
      ...(query.secrets !== undefined ? { secretsId: query.secrets } : {}),
      ...(namedContexts !== null ? { namedContexts } : {}),
      ...(query.platform !== undefined ? { platforms: query.platform } : {}),
    });
    return {
      id,
      state: record.state,
      url: `/api/v1/builds/${id}`,
      logsUrl: `/api/v1/builds/${id}/logs`,
      contextDigest,
    };
  }

  async get(id: string): Promise<BuildRecord> {
    const record = await this.records.get(id);
    if (record === null) {
      throw new StratumError('BUILD_UNKNOWN', `no build with id "${id}"`);
    }
    return record;
  }

  /**
   * A page of builds, newest first. `visible` (API_AUTH: the builds the caller may pull) leaves
   * the others out of the page and of its total.
   */
  list(query: ListBuildsQuery, visible?: (record: BuildRecord) => boolean): Promise<BuildPage> {
    if (query.project !== undefined) {
      return this.records.listBySource(
        { project: query.project, ...(query.ref !== undefined ? { ref: query.ref } : {}) },
        query.offset,
        query.limit,
        query.state,
        visible,
      );
    }
    return this.records.list(query.offset, query.limit, query.state, visible);
  }

  /**
   * Per-day duration percentiles, outcomes and cache hit rates of the last `days` days, drawn
   * from the builds `visible` keeps (all when not given).
   */
  async stats(query: BuildStatsQuery, visible?: (record: BuildRecord) => boolean): Promise<BuildStats> {
    const now = new Date();
    const since =
      Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - (query.days - 1) * 86_400_000;
    const created = await this.records.createdSince(since, query.project);
    const records = visible === undefined ? created : created.filter(visible);
    return buildStats(records, {
      days: query.days,
      now,
      ...(query.project !== undefined ? { project: query.project } : {}),
    });
  }

  /** Events of a build: replayed from `afterId`, then live until it ends. */
  async events(
    id: string,
    afterId: string | null,
    signal: AbortSignal,
  ): Promise<AsyncIterable<StoredBuildEvent>> {
    await this.get(id);
    return this.records.follow(id, afterId ?? '0', signal);
  }

  /**
   * Cancels a build. A queued job is removed at once; a running one is signalled and its
   * worker kills the step, cleans up and records `cancelled`.
   */
  async cancel(id: string): Promise<BuildRecord> {
    const record = await this.get(id);
    if (isTerminalBuildState(record.state)) {
      throw new StratumError('BUILD_FINISHED', `build ${id} has already ${record.state}`);
    }
    await this.records.requestCancel(id);
    if (await this.producer.removeIfWaiting(id)) {
      await this.records.appendEvent(id, {
        type: 'log',
        step: null,
        stream: 'system',
        text: 'cancelled before it started\n',
      });
      return (await this.records.transition(id, BuildState.Cancelled, { error: 'cancelled' })) ?? record;
    }
    return (await this.records.get(id)) ?? record;
  }

  /**
   * Auto-cancel: cancels the project's queued or running builds of `ref` that were created
   * before `newerId` (as GitHub Actions' concurrency groups with cancel-in-progress do). Each
   * gets a log line naming the build that superseded it. Returns the ids cancelled.
   */
  async cancelSuperseded(project: string, ref: string, newerId: string): Promise<string[]> {
    const newer = await this.records.get(newerId);
    if (newer === null) {
      return [];
    }
    const open = [
      ...(await this.records.listBySource({ project, ref }, 0, 100, BuildState.Queued)).items,
      ...(await this.records.listBySource({ project, ref }, 0, 100, BuildState.Running)).items,
    ].filter((b) => b.id !== newerId && b.createdAt <= newer.createdAt);
    const cancelled: string[] = [];
    for (const b of open) {
      await this.records.appendEvent(b.id, {
        type: 'log',
        step: null,
        stream: 'system',
        text: `cancelling: superseded by build ${newerId} (a newer push to ${ref})\n`,
      });
      try {
        await this.cancel(b.id);
        cancelled.push(b.id);
      } catch (err) {
        if (!(err instanceof StratumError && err.code === 'BUILD_FINISHED')) {
          throw err;
        }
      }
    }
    return cancelled;
  }

  /**
   * A new build of a finished one: same context blob, Dockerfile, tags, build args, target and
   * no-cache flag. `push` is implied by tags naming another registry (only accepted with it).
   */
  async retry(id: string): Promise<BuildSubmitted> {
    const original = await this.get(id);
    if (!isTerminalBuildState(original.state)) {
      throw new StratumError('BAD_REQUEST', `build ${id} is still ${original.state}: cancel it or wait`);
    }
    if (!(await this.blobs.has(original.contextDigest))) {
      throw new StratumError(
        'CONTEXT_MISSING',
        `the context of build ${id} (${original.contextDigest}) is no longer stored`,
      );
    }
    // A retry keeps the project, ref and commit it builds, but it is someone's manual act.
    const source: BuildSource =
      original.source === undefined || original.source.project === null
        ? API_SOURCE
        : { ...original.source, trigger: BuildTrigger.Manual };
    return this.createBuild(
      original.contextDigest,
      original.contextSize,
      original.dockerfile,
      {
        t: [...original.tags],
        dockerfile: original.dockerfile,
        buildargs: { ...original.buildArgs },
        target: original.target ?? undefined,
        nocache: original.noCache,
        network: original.network,
        platform: original.platforms,
        push: original.tags.some((t) => parseReference(t).registry !== null),
      },
      source,
      original.namedContexts ?? null,
    );
  }
}

/** The source of a build sent to the API with its context. */
const API_SOURCE: BuildSource = {
  trigger: BuildTrigger.Api,
  project: null,
  ref: null,
  sha: null,
  author: null,
  message: null,
  prNumber: null,
  commitUrl: null,
};

/** `network=sandbox` is refused up front where the operator turned the sandbox off. */
function checkNetwork(network: SubmitBuildQuery['network'], config: StratumConfig): void {
  if (network === 'sandbox' && !config.allowSandboxNetwork) {
    throw new StratumError(
      'BAD_REQUEST',
      'network=sandbox is turned off on this service (ALLOW_SANDBOX_NETWORK=false); use network=none',
    );
  }
}

/**
 * Tags are `repo:tag` in our registry, or `host[:port]/repo:tag` in another one — those only
 * with `push=true` (as `docker buildx build --push`), since the image is copied there.
 */
function checkTags(tags: readonly string[], push: boolean, config: StratumConfig): void {
  const { localRegistries = [], mirrorPrefixes = [] } = pushSubmitterOptions(config);
  for (const tag of tags) {
    let ref;
    try {
      ref = parseReference(tag);
    } catch (err) {
      throw new StratumError(
        'BAD_REQUEST',
        `invalid tag "${tag}": ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (ref.digest !== null) {
      throw new StratumError('BAD_REQUEST', `invalid tag "${tag}": a tag cannot name a digest`);
    }
    if (ref.registry !== null && !push) {
      throw new StratumError(
        'BAD_REQUEST',
        `tag "${tag}" names another registry (${ref.registry}); add push=true to push the image there`,
      );
    }
    const conflict =
      ref.registry === null || localRegistries.includes(ref.registry)
        ? mirrorWriteConflict(ref.repository, mirrorPrefixes)
        : null;
    if (conflict !== null) {
      throw new StratumError('BAD_REQUEST', `invalid tag "${tag}": ${conflict}`);
    }
  }
}
