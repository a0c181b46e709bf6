import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import {
  Descriptor,
  isDigest,
  MediaType,
  normalizeMediaType,
  parseManifest,
  ParsedManifest,
} from '@stratum/oci';
import {
  assertTagsRemovable,
  BlobDigest,
  BlobStore,
  isBlobDigest,
  isRepositoryName,
  isStorageError,
  isTagName,
  RepositoryStore,
  withQuota,
} from '@stratum/storage';
import { InclusiveRange, parseContentRange, parseRangeHeader } from './byte-range';
import { DEFAULT_INDEX_LIMITS, IndexLimits, indexLimitError, walkManifests } from './index-walk';
import { RegistryError } from './registry-error';
import { RegistryKeys, UploadSession, UploadSessionStore } from './upload-session-store';

/** Tunables of {@link RegistryService}. */
export interface RegistryServiceOptions {
  /** Largest manifest accepted (docker/distribution uses 4 MiB too). */
  readonly maxManifestBytes?: number;
  /** Largest page of tags or repositories; a larger `n` is clamped. */
  readonly maxPageSize?: number;
  /** Bounds on an index pushed here (entries, nesting, manifests reached). */
  readonly indexLimits?: IndexLimits;
  /**
   * Most repositories looked at for a mount without `from` (automatic content discovery);
   * past it the request falls back to an upload session, as the spec allows.
   */
  readonly maxMountScan?: number;
  /**
   * Told of each manifest pushed or deleted through the registry API, after the change (outgoing
   * notifications). Must not throw, and must not wait on anything outside the system.
   */
  /**
   * A manifest pushed by digest (no tag). Tag writes and deletions are told by the repository
   * store itself (REPOSITORY_EVENTS), wherever they happen.
   */
  readonly onManifestEvent?: (event: ManifestEvent) => Promise<void>;
}

/** A manifest pushed (`PUT`) or deleted (`DELETE`, by tag or digest) in a repository. */
export interface ManifestEvent {
  readonly action: 'push' | 'delete';
  readonly repository: string;
  readonly digest: string;
  /** Null for a delete by digest; absent mediaType/size when deleted by tag. */
  readonly tag: string | null;
  readonly mediaType: string | null;
  readonly size: number | null;
}

/** Whether the asker may pull from a repository (the caller's access decision). */
export type RepositoryReadCheck = (repository: string) => boolean | Promise<boolean>;

/** A manifest as stored: the exact bytes received at push time. */
export interface ManifestContent {
  readonly digest: BlobDigest;
  readonly mediaType: string;
  readonly size: number;
  readonly bytes: Buffer;
}

export interface BlobInfo {
  readonly digest: BlobDigest;
  readonly size: number;
}

/** A blob to send; `range` is set when only part of it is (206). */
export interface BlobContent extends BlobInfo {
  readonly stream: Readable;
  readonly range: InclusiveRange | null;
}

/** Progress of an upload session. */
export interface UploadState {
  readonly id: string;
  readonly repository: string;
  readonly offset: number;
}

/** Outcome of `POST /v2/<name>/blobs/uploads/`. */
export type StartUploadResult =
  | { readonly kind: 'created'; readonly blob: BlobInfo }
  | { readonly kind: 'mounted'; readonly blob: BlobInfo }
  | { readonly kind: 'session'; readonly upload: UploadState };

/** One page of a sorted listing; `next` is the `last` to ask for the following page, if any. */
export interface Page {
  readonly items: string[];
  readonly next: string | null;
}

/** Page request: `n` items after `last`. */
export interface PageQuery {
  readonly n?: number;
  readonly last?: string;
}

/** The referrers of a subject, as the OCI image index the spec answers with. */
export interface ReferrersIndex {
  readonly schemaVersion: 2;
  readonly mediaType: typeof MediaType.OciIndex;
  readonly manifests: Descriptor[];
}

const DEFAULT_MAX_MANIFEST = 4 * 1024 * 1024;
const DEFAULT_MAX_PAGE = 1000;
const DEFAULT_MAX_MOUNT_SCAN = 1000;
/** Layers the registry need not hold: they are fetched from their `urls`. */
const NON_DISTRIBUTABLE = new Set([
  MediaType.DockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);

/**
 * The OCI distribution API's domain logic over {@link BlobStore} + {@link RepositoryStore}, no HTTP.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md
 *
 * - Manifests are stored as blobs, byte for byte as pushed, and linked to their repository; the
 *   media type served back is the document's `mediaType` field (Docker schema 2 requires it;
 *   an OCI manifest or index without it is recognised by its shape).
 * - A manifest is accepted only when every config/layer blob it names is linked to the repository
 *   and every child manifest of an index is in it (MANIFEST_BLOB_UNKNOWN otherwise); the tag is
 *   moved last, so no tag ever names something missing.
 * - Blobs are served only from repositories that link them (pushed, mounted or referenced there).
 * - Referrers (manifests with a `subject`) are indexed in Redis sets at push time.
 */
export class RegistryService {
  private readonly maxManifestBytes: number;
  private readonly maxPageSize: number;
  private readonly indexLimits: IndexLimits;
  private readonly maxMountScan: number;

  constructor(
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
    private readonly uploads: UploadSessionStore,
    private readonly redis: Redis,
    options: RegistryServiceOptions = {},
  ) {
    this.maxManifestBytes = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST;
    this.maxPageSize = options.maxPageSize ?? DEFAULT_MAX_PAGE;
    this.indexLimits = options.indexLimits ?? DEFAULT_INDEX_LIMITS;
    this.maxMountScan = options.maxMountScan ?? DEFAULT_MAX_MOUNT_SCAN;
    this.onManifestEvent = options.onManifestEvent ?? null;
  }

  private readonly onManifestEvent: ((event: ManifestEvent) => Promise<void>) | null;

  // ---------------------------------------------------------------- manifests

  /** The manifest a tag or digest names in `repository`; MANIFEST_UNKNOWN when there is none. */
  async getManifest(repository: string, reference: string): Promise<ManifestContent> {
    const digest = await this.resolveReference(repository, reference);
    let bytes: Buffer;
    try {
      bytes = await readLimited(await this.blobs.get(digest), this.maxManifestBytes, 'MANIFEST_INVALID');
    } catch (err) {
      if (isStorageError(err, 'BLOB_UNKNOWN')) {
        throw manifestUnknown(repository, reference);
      }
      if (isStorageError(err, 'BLOB_CORRUPT')) {
        throw new RegistryError('MANIFEST_UNKNOWN', err.message, {
          name: repository,
          reference,
          quarantined: true,
        });
      }
      throw err;
    }
    return { digest, mediaType: storedMediaType(bytes), size: bytes.length, bytes };
  }

  /**
   * Validates and stores a manifest, then points `reference` at it when it is a tag.
   * `contentType` is the request's Content-Type (it must agree with the document's `mediaType`).
   * Returns the digest and, for a manifest with a `subject`, the subject's digest (`OCI-Subject`).
   */
  async putManifest(
    repository: string,
    reference: string,
    body: Readable | Buffer,
    contentType?: string,
  ): Promise<{ digest: BlobDigest; subject: string | null }> {
    assertName(repository);
    const ref = parseManifestReference(reference);
    const bytes = Buffer.isBuffer(body)
      ? body
      : await readLimited(body, this.maxManifestBytes, 'MANIFEST_INVALID');
    if (bytes.length > this.maxManifestBytes) {
      throw new RegistryError(
        'MANIFEST_INVALID',
        `manifest larger than ${this.maxManifestBytes} bytes`,
        undefined,
        {
          status: 413,
        },
      );
    }
    const parsed = parseManifest(bytes, contentType);
    if (!parsed.ok) {
      throw new RegistryError(
        parsed.code === 'MANIFEST_UNSUPPORTED' ? 'UNSUPPORTED' : 'MANIFEST_INVALID',
        parsed.message,
        parsed.issues.length > 0 ? { issues: parsed.issues } : undefined,
      );
    }
    if (
      (parsed.kind === 'docker-manifest' || parsed.kind === 'docker-manifest-list') &&
      declaredMediaType(bytes) === undefined
    ) {
      // Without the field we could not tell it apart from an OCI document when serving it back.
      throw new RegistryError(
        'MANIFEST_INVALID',
        'a Docker schema 2 manifest must carry its mediaType field',
      );
    }
    if (ref.kind === 'digest' && ref.digest !== parsed.digest) {
      throw new RegistryError('DIGEST_INVALID', `manifest hashes to ${parsed.digest}, not ${ref.digest}`, {
        digest: parsed.digest,
      });
    }
    await this.checkReferences(repository, parsed);

    const digest: BlobDigest = parsed.digest;
    // IMMUTABLE_TAGS: refused before anything is stored, so no untagged manifest stays behind.
    if (ref.kind === 'tag') {
      await this.repositories.assertTagSettable?.(repository, ref.tag, digest);
    }
    const guarded = ref.kind === 'tag' && this.repositories.isImmutable?.(repository, ref.tag) === true;
    const wasLinked = guarded && (await this.repositories.hasManifest(repository, digest));
    // REPOSITORY_QUOTAS: admitted before the bytes are stored, so a refused manifest is not kept.
    await withQuota(this.repositories, repository, [{ digest, size: bytes.length }], async () => {
      await this.blobs.put(Readable.from([bytes]), { expectedDigest: digest, expectedSize: bytes.length });
      await this.repositories.linkManifest(repository, digest);
    });
    const subject = manifestSubject(parsed);
    if (subject !== null) {
      await this.redis.sadd(RegistryKeys.referrers(repository, subject), digest);
    }
    if (ref.kind === 'tag') {
      // The repository store tells of the tag (REPOSITORY_EVENTS), as for every other tag write.
      try {
        await this.repositories.setTag(repository, ref.tag, digest);
      } catch (err) {
        // Another writer set the immutable tag first: the manifest this PUT linked goes again.
        if (isStorageError(err, 'TAG_IMMUTABLE') && guarded && !wasLinked) {
          await this.repositories.unlinkManifest(repository, digest);
          if (subject !== null) {
            await this.redis.srem(RegistryKeys.referrers(repository, subject), digest);
          }
        }
        throw err;
      }
    } else {
      await this.onManifestEvent?.({
        action: 'push',
        repository,
        digest,
        tag: null,
        mediaType: storedMediaType(bytes),
        size: bytes.length,
      });
    }
    return { digest, subject };
  }

  /**
   * Deletes by digest (unlinks the manifest from the repository and removes every tag naming it)
   * or by tag (removes only the tag). The bytes stay in the blob store for other repositories;
   * reclaiming unreferenced blobs is garbage collection's job.
   */
  async deleteManifest(repository: string, reference: string): Promise<void> {
    assertName(repository);
    const ref = parseManifestReference(reference);
    if (ref.kind === 'tag') {
      // The repository store tells of the deletion (REPOSITORY_EVENTS).
      if (!(await this.repositories.deleteTag(repository, ref.tag))) {
        throw manifestUnknown(repository, reference);
      }
      return;
    }
    const digest = ref.digest;
    if (!(await this.repositories.hasManifest(repository, digest))) {
      throw manifestUnknown(repository, reference);
    }
    let subject: string | null = null;
    try {
      const bytes = await readLimited(
        await this.blobs.get(digest),
        this.maxManifestBytes,
        'MANIFEST_INVALID',
      );
      const parsed = parseManifest(bytes);
      subject = parsed.ok ? manifestSubject(parsed) : null;
    } catch {
      // Unreadable bytes have no referrers entry worth cleaning.
    }
    const tags: string[] = [];
    for (const tag of await this.repositories.listTags(repository)) {
      if ((await this.repositories.getTag(repository, tag)) === digest) {
        tags.push(tag);
      }
    }
    assertTagsRemovable(this.repositories, repository, tags);
    for (const tag of tags) {
      await this.repositories.deleteTag(repository, tag);
    }
    await this.repositories.unlinkManifest(repository, digest);
    if (subject !== null) {
      await this.redis.srem(RegistryKeys.referrers(repository, subject), digest);
    }
  }

  // ---------------------------------------------------------------- blobs

  /** Size of a blob the repository may serve; BLOB_UNKNOWN otherwise. */
  async statBlob(repository: string, digest: string): Promise<BlobInfo> {
    assertName(repository);
    const d = parseBlobDigestParam(digest);
    if (
      !(await this.repositories.hasBlob(repository, d)) &&
      !(await this.repositories.hasManifest(repository, d))
    ) {
      throw blobUnknown(d);
    }
    const s = await this.blobs.stat(d);
    if (!s.exists) {
      throw blobUnknown(d);
    }
    return { digest: d, size: s.size };
  }

  /** A blob's bytes, or the part a `Range` header asks for (RANGE_INVALID when unsatisfiable). */
  /**
   * Where a client may fetch the whole blob directly (a presigned object-storage URL), after the
   * same checks as a GET (repository holds it); null when the store serves no redirects.
   */
  async blobRedirect(
    repository: string,
    digest: string,
  ): Promise<{ url: string; digest: BlobDigest } | null> {
    if (this.blobs.redirectUrl === undefined) {
      return null;
    }
    const info = await this.statBlob(repository, digest);
    const url = await this.blobs.redirectUrl(info.digest);
    return url === null ? null : { url, digest: info.digest };
  }

  async getBlob(repository: string, digest: string, rangeHeader?: string): Promise<BlobContent> {
    const info = await this.statBlob(repository, digest);
    const range = parseRangeHeader(rangeHeader, info.size);
    try {
      const stream = await this.blobs.get(info.digest, range ?? undefined);
      return { ...info, stream, range };
    } catch (err) {
      if (isStorageError(err, 'BLOB_UNKNOWN')) {
        throw blobUnknown(info.digest);
      }
      throw err; // BLOB_CORRUPT: toRegistryError answers 404 BLOB_UNKNOWN with its message
    }
  }

  /**
   * Unlinks a blob from the repository (the bytes stay for other repositories). Refused with
   * DENIED (409) while a manifest of the repository names it as config or layer: unlinking it
   * would leave that manifest (and its tags) unpullable. Such blobs go when their manifests do,
   * through manifest DELETE and garbage collection.
   */
  async deleteBlob(repository: string, digest: string): Promise<void> {
    assertName(repository);
    const d = parseBlobDigestParam(digest);
    if (!(await this.repositories.hasBlob(repository, d))) {
      throw blobUnknown(d);
    }
    const user = await this.manifestUsing(repository, d);
    if (user !== null) {
      throw new RegistryError(
        'DENIED',
        `blob ${d} is in use by manifest ${repository}@${user.manifest}${user.tag !== null ? ` (tag ${user.tag})` : ''}; delete the manifest first`,
        { digest: d, manifest: user.manifest, ...(user.tag !== null ? { tag: user.tag } : {}) },
        { status: 409 },
      );
    }
    if (!(await this.repositories.unlinkBlob(repository, d))) {
      throw blobUnknown(d);
    }
  }

  /**
   * A manifest linked in `repository` whose config or layers include `blob` (tagged ones first,
   * for the message), or null. Untagged manifests count too: they are pullable by digest. Each
   * manifest is read once; unreadable ones are skipped (they cannot be pulled either way).
   */
  private async manifestUsing(
    repository: string,
    blob: BlobDigest,
  ): Promise<{ manifest: BlobDigest; tag: string | null } | null> {
    const seen = new Set<string>();
    const tagged: { manifest: BlobDigest; tag: string | null }[] = [];
    for (const tag of await this.repositories.listTags(repository)) {
      const d = await this.repositories.getTag(repository, tag);
      if (d !== null) {
        tagged.push({ manifest: d, tag });
      }
    }
    const linked = (await this.repositories.listManifests(repository)).map((manifest) => ({
      manifest,
      tag: null,
    }));
    for (const candidate of [...tagged, ...linked]) {
      if (seen.has(candidate.manifest)) {
        continue;
      }
      seen.add(candidate.manifest);
      let parsed: ReturnType<typeof parseManifest>;
      try {
        parsed = parseManifest(
          await readLimited(
            await this.blobs.get(candidate.manifest),
            this.maxManifestBytes,
            'MANIFEST_INVALID',
          ),
        );
      } catch {
        continue;
      }
      if (
        parsed.ok &&
        (parsed.kind === 'oci-manifest' || parsed.kind === 'docker-manifest') &&
        [parsed.manifest.config, ...parsed.manifest.layers].some((desc) => desc.digest === blob)
      ) {
        return candidate;
      }
    }
    return null;
  }

  // ---------------------------------------------------------------- uploads

  /**
   * `POST /v2/<name>/blobs/uploads/`: with `mount` + `from`, links a blob another repository
   * holds (falling back to a new session when it cannot); with `mount` alone and a `mayRead`
   * check, links it when this repository or one the asker may pull from holds it (the spec's
   * "automatic content discovery"); with `digest`, stores `body` as the whole blob (monolithic
   * upload, verified; nothing is kept on a mismatch); otherwise opens a session for PATCH/PUT.
   */
  async startUpload(
    repository: string,
    options: {
      digest?: string;
      mount?: string;
      from?: string;
      mayRead?: RepositoryReadCheck;
      body?: Readable;
      length?: number;
    } = {},
  ): Promise<StartUploadResult> {
    assertName(repository);
    if (options.mount !== undefined) {
      const d = parseBlobDigestParam(options.mount);
      const source =
        options.from !== undefined
          ? isRepositoryName(options.from) && (await this.repositories.hasBlob(options.from, d))
            ? options.from
            : null
          : options.mayRead !== undefined
            ? await this.findReadableHolder(repository, d, options.mayRead)
            : null;
      if (source !== null) {
        const s = await this.blobs.stat(d);
        if (s.exists) {
          await this.repositories.linkBlob(repository, d);
          options.body?.resume();
          return { kind: 'mounted', blob: { digest: d, size: s.size } };
        }
      }
    }
    if (options.digest !== undefined) {
      const expected = parseBlobDigestParam(options.digest);
      const body = options.body ?? Readable.from([]);
      // REPOSITORY_QUOTAS: with a Content-Length the blob is admitted before a byte is stored.
      const admitted = options.length !== undefined ? [{ digest: expected, size: options.length }] : [];
      const put = await withQuota(this.repositories, repository, admitted, async () => {
        const p = await this.blobs.put(body, {
          expectedDigest: expected,
          ...(options.length !== undefined ? { expectedSize: options.length } : {}),
        });
        await this.repositories.linkBlob(repository, p.digest);
        return p;
      }).catch((err: unknown) => {
        body.resume();
        throw err;
      });
      return { kind: 'created', blob: { digest: put.digest, size: put.size } };
    }
    options.body?.resume();
    const session = await this.uploads.create(repository);
    return { kind: 'session', upload: state(session) };
  }

  /** `GET /v2/<name>/blobs/uploads/<id>`: how much has arrived. */
  async uploadStatus(repository: string, id: string): Promise<UploadState> {
    return state(await this.session(repository, id));
  }

  /**
   * `PATCH`: appends a chunk. `contentRange` (`<start>-<end>`), when sent, must start at the
   * current offset (RANGE_INVALID, 416, otherwise) and its length must match what arrives.
   */
  async appendUpload(
    repository: string,
    id: string,
    body: Readable,
    options: { contentRange?: string; length?: number } = {},
  ): Promise<UploadState> {
    const session = await this.session(repository, id, body);
    let range: InclusiveRange | null;
    try {
      range = parseContentRange(options.contentRange);
    } catch (err) {
      body.resume();
      throw err;
    }
    const offset = await this.uploads.append(session, body, {
      ...(range !== null ? { start: range.start, length: range.end - range.start + 1 } : {}),
      ...(range === null && options.length !== undefined ? { length: options.length } : {}),
    });
    return { id: session.id, repository, offset };
  }

  /**
   * `PUT ?digest=`: appends the optional last chunk, then moves the upload into the blob store,
   * verified against `digest`. On DIGEST_INVALID / SIZE_INVALID the session and its bytes are
   * dropped, so a failed upload leaves nothing behind.
   */
  async completeUpload(
    repository: string,
    id: string,
    digest: string | undefined,
    body?: Readable,
    options: { contentRange?: string; length?: number } = {},
  ): Promise<BlobInfo> {
    const session = await this.session(repository, id, body);
    if (digest === undefined || digest === '') {
      body?.resume();
      throw new RegistryError(
        'DIGEST_INVALID',
        'the digest query parameter is required to complete an upload',
      );
    }
    let expected: BlobDigest;
    try {
      expected = parseBlobDigestParam(digest);
    } catch (err) {
      body?.resume();
      throw err;
    }
    let current = session;
    if (body !== undefined) {
      await this.appendUpload(repository, id, body, options);
      // The parts as they are now (this chunk, and any another replica took meanwhile).
      current = await this.session(repository, id);
    }
    try {
      // REPOSITORY_QUOTAS: admitted before the parts become a blob; refused, the parts are deleted.
      const put = await withQuota(
        this.repositories,
        repository,
        [{ digest: expected, size: current.offset }],
        async () => {
          const p = await this.blobs.put(this.uploads.read(current), {
            expectedDigest: expected,
            expectedSize: current.offset,
          });
          await this.repositories.linkBlob(repository, p.digest);
          return p;
        },
      );
      await this.uploads.delete(session.id);
      return { digest: put.digest, size: put.size };
    } catch (err) {
      if (
        isStorageError(err, 'DIGEST_INVALID') ||
        isStorageError(err, 'SIZE_INVALID') ||
        isStorageError(err, 'QUOTA_EXCEEDED')
      ) {
        await this.uploads.delete(session.id);
      }
      throw err;
    }
  }

  /** `DELETE`: abandons an upload. */
  async cancelUpload(repository: string, id: string): Promise<void> {
    const session = await this.session(repository, id);
    await this.uploads.delete(session.id);
  }

  // ---------------------------------------------------------------- listings

  /** Tags of a repository, sorted, paged; NAME_UNKNOWN for a repository that does not exist. */
  async listTags(repository: string, query: PageQuery = {}): Promise<Page> {
    assertName(repository);
    if (!(await this.repositories.hasRepository(repository))) {
      throw new RegistryError('NAME_UNKNOWN', `repository name not known to registry: ${repository}`, {
        name: repository,
      });
    }
    return this.page(await this.repositories.listTags(repository), query);
  }

  /** Every repository, sorted, paged. */
  async listRepositories(query: PageQuery = {}): Promise<Page> {
    return this.page(await this.repositories.listRepositories(), query);
  }

  /**
   * `GET /v2/<name>/referrers/<digest>`: the manifests of the repository whose `subject` is
   * `digest`, as an image index (empty, not 404, when there are none), optionally filtered by
   * artifact type.
   */
  async referrers(repository: string, digest: string, artifactType?: string): Promise<ReferrersIndex> {
    assertName(repository);
    if (!isDigest(digest)) {
      throw new RegistryError('DIGEST_INVALID', `invalid digest: ${JSON.stringify(digest)}`);
    }
    const members = (await this.redis.smembers(RegistryKeys.referrers(repository, digest)))
      .filter(isBlobDigest)
      .sort();
    const manifests: Descriptor[] = [];
    for (const d of members) {
      if (!(await this.repositories.hasManifest(repository, d))) {
        continue;
      }
      let parsed: ReturnType<typeof parseManifest>;
      try {
        parsed = parseManifest(
          await readLimited(await this.blobs.get(d), this.maxManifestBytes, 'MANIFEST_INVALID'),
        );
      } catch {
        continue;
      }
      if (!parsed.ok) {
        continue;
      }
      const descriptor = referrerDescriptor(parsed);
      if (artifactType === undefined || descriptor.artifactType === artifactType) {
        manifests.push(descriptor);
      }
    }
    return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
  }

  /** Removes temp files of expired upload sessions. */
  sweepUploads(): Promise<number> {
    return this.uploads.sweep();
  }

  // ---------------------------------------------------------------- internals

  /**
   * A repository holding `digest` that the asker may read: `repository` itself first (a mount
   * into it needs push there), then the others in name order, at most `maxMountScan` of them.
   * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#mounting-a-blob-from-another-repository
   */
  private async findReadableHolder(
    repository: string,
    digest: BlobDigest,
    mayRead: RepositoryReadCheck,
  ): Promise<string | null> {
    if (await this.repositories.hasBlob(repository, digest)) {
      return repository;
    }
    let looked = 0;
    for (const other of await this.repositories.listRepositories()) {
      if (other === repository) {
        continue;
      }
      if (++looked > this.maxMountScan) {
        return null;
      }
      if ((await this.repositories.hasBlob(other, digest)) && (await mayRead(other))) {
        return other;
      }
    }
    return null;
  }

  private async resolveReference(repository: string, reference: string): Promise<BlobDigest> {
    assertName(repository);
    // A read of a reference that cannot be a tag finds nothing: the spec's answer is 404
    // MANIFEST_UNKNOWN (the conformance suite checks it); only PUT refuses the format (TAG_INVALID).
    if (!reference.includes(':') && !isTagName(reference)) {
      throw manifestUnknown(repository, reference);
    }
    const ref = parseManifestReference(reference);
    if (ref.kind === 'tag') {
      const digest = await this.repositories.getTag(repository, ref.tag);
      if (digest === null) {
        throw manifestUnknown(repository, reference);
      }
      return digest;
    }
    if (!(await this.repositories.hasManifest(repository, ref.digest))) {
      throw manifestUnknown(repository, reference);
    }
    return ref.digest;
  }

  private async checkReferences(repository: string, parsed: ParsedManifest): Promise<void> {
    const missing: string[] = [];
    const wrongSize: string[] = [];
    if (parsed.kind === 'oci-manifest' || parsed.kind === 'docker-manifest') {
      const { config, layers } = parsed.manifest;
      for (const desc of [config, ...layers]) {
        if (NON_DISTRIBUTABLE.has(normalizeMediaType(desc.mediaType)) && (desc.urls?.length ?? 0) > 0) {
          continue;
        }
        const d = desc.digest;
        if (!isBlobDigest(d) || !(await this.repositories.hasBlob(repository, d))) {
          missing.push(d);
          continue;
        }
        const s = await this.blobs.stat(d);
        if (!s.exists) {
          missing.push(d);
        } else if (s.size !== desc.size) {
          wrongSize.push(d);
        }
      }
    } else {
      const entries = parsed.manifest.manifests;
      if (entries.length > this.indexLimits.maxEntries) {
        throw indexLimitError('maxEntries', entries.length, this.indexLimits, 'pushed');
      }
      for (const desc of entries) {
        const d = desc.digest;
        if (!isBlobDigest(d) || !(await this.repositories.hasManifest(repository, d))) {
          missing.push(d);
        }
      }
      if (missing.length === 0) {
        // What a pull or a push of this index would walk, bounded now rather than then: nesting
        // and distinct manifests reached. Each stored manifest is read once (memo), at most
        // maxManifests of them.
        await walkManifests(
          parsed.digest,
          async (d) => (d === parsed.digest ? parsed : this.readStoredManifest(d)),
          { limits: this.indexLimits, where: 'pushed' },
        );
      }
    }
    if (missing.length > 0) {
      throw new RegistryError(
        'MANIFEST_BLOB_UNKNOWN',
        `manifest references ${missing.length} blob(s) or manifest(s) unknown to ${repository}`,
        { missing },
      );
    }
    if (wrongSize.length > 0) {
      throw new RegistryError('MANIFEST_INVALID', 'manifest gives a wrong size for some blob(s)', {
        digests: wrongSize,
      });
    }
  }

  /** A stored manifest, parsed; null when it is gone or not a manifest. */
  private async readStoredManifest(digest: BlobDigest): Promise<ParsedManifest | null> {
    try {
      const parsed = parseManifest(
        await readLimited(await this.blobs.get(digest), this.maxManifestBytes, 'MANIFEST_INVALID'),
      );
      return parsed.ok ? parsed : null;
    } catch (err) {
      if (isStorageError(err, 'BLOB_UNKNOWN') || isStorageError(err, 'BLOB_CORRUPT')) {
        return null;
      }
      throw err;
    }
  }

  private async session(repository: string, id: string, body?: Readable): Promise<UploadSession> {
    assertName(repository);
    const session = await this.uploads.get(id);
    if (session === null || session.repository !== repository) {
      body?.resume();
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `blob upload unknown to registry: ${id}`, {
        upload: id,
      });
    }
    return session;
  }

  private page(sorted: string[], query: PageQuery): Page {
    const after =
      query.last === undefined || query.last === '' ? sorted : sorted.filter((x) => x > query.last!);
    if (query.n === undefined) {
      return { items: after, next: null };
    }
    const n = Math.min(query.n, this.maxPageSize);
    const items = after.slice(0, n);
    const next = after.length > n && n > 0 ? (items[items.length - 1] ?? null) : null;
    return { items, next };
  }
}

/**
 * Validates paging parameters from a query string: `n` a non-negative integer.
 * Throws PAGINATION_NUMBER_INVALID.
 */
export function parsePageQuery(n: unknown, last: unknown): PageQuery {
  const query: { n?: number; last?: string } = {};
  if (n !== undefined) {
    if (typeof n !== 'string' || !/^\d{1,9}$/.test(n)) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', `invalid page size n=${JSON.stringify(n)}`);
    }
    query.n = Number(n);
  }
  if (typeof last === 'string') {
    query.last = last;
  }
  return query;
}

function state(session: UploadSession): UploadState {
  return { id: session.id, repository: session.repository, offset: session.offset };
}

function assertName(repository: string): void {
  if (!isRepositoryName(repository)) {
    throw new RegistryError('NAME_INVALID', `invalid repository name: ${JSON.stringify(repository)}`, {
      name: repository,
    });
  }
}

type ManifestReference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: BlobDigest };

/** A manifest reference is a tag or a digest (a digest contains ':', a tag cannot). */
function parseManifestReference(reference: string): ManifestReference {
  if (reference.includes(':')) {
    return { kind: 'digest', digest: parseBlobDigestParam(reference) };
  }
  if (!isTagName(reference)) {
    throw new RegistryError('TAG_INVALID', `invalid tag: ${JSON.stringify(reference)}`);
  }
  return { kind: 'tag', tag: reference };
}

/** Only sha256 is stored; other valid algorithms are refused as unsupported digests. */
function parseBlobDigestParam(value: string): BlobDigest {
  if (isBlobDigest(value)) {
    return value;
  }
  throw new RegistryError(
    'DIGEST_INVALID',
    isDigest(value) ? `unsupported digest algorithm: ${value}` : `invalid digest: ${JSON.stringify(value)}`,
  );
}

function manifestUnknown(repository: string, reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: ${repository}:${reference}`, {
    name: repository,
    reference,
  });
}

function blobUnknown(digest: string): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', `blob unknown to registry: ${digest}`, { digest });
}

function manifestSubject(parsed: ParsedManifest): string | null {
  return (parsed.kind === 'oci-manifest' || parsed.kind === 'oci-index') && parsed.manifest.subject
    ? parsed.manifest.subject.digest
    : null;
}

function referrerDescriptor(parsed: ParsedManifest): Descriptor {
  const m = parsed.manifest;
  const artifactType =
    ('artifactType' in m ? m.artifactType : undefined) ??
    (parsed.kind === 'oci-manifest' ? parsed.manifest.config.mediaType : undefined);
  const annotations = 'annotations' in m ? m.annotations : undefined;
  return {
    mediaType: parsed.mediaType,
    digest: parsed.digest,
    size: parsed.size,
    ...(artifactType !== undefined ? { artifactType } : {}),
    ...(annotations !== undefined ? { annotations } : {}),
  };
}

/** The `mediaType` field of a JSON document, if it has a string one. */
function declaredMediaType(bytes: Buffer): string | undefined {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof doc === 'object' && doc !== null && 'mediaType' in doc && typeof doc.mediaType === 'string') {
      return doc.mediaType;
    }
  } catch {
    // not JSON: no field
  }
  return undefined;
}

/** The media type a stored manifest is served with: its field, else OCI index/manifest by shape. */
export function storedMediaType(bytes: Buffer): string {
  const declared = declaredMediaType(bytes);
  if (declared !== undefined) {
    return declared;
  }
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof doc === 'object' && doc !== null && 'manifests' in doc) {
      return MediaType.OciIndex;
    }
  } catch {
    // fall through
  }
  return MediaType.OciManifest;
}

/** Reads a stream whole, refusing more than `max` bytes (the stream is destroyed then). */
export async function readLimited(
  stream: Readable,
  max: number,
  code: 'MANIFEST_INVALID' | 'SIZE_INVALID',
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  // Past the limit keep reading (and dropping) a while, so the client gets our 413 instead of a
  // reset connection; a body far past it is cut off.
  const drainLimit = max + 64 * 1024 * 1024;
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += buf.length;
    if (total > drainLimit) {
      break; // ends the iteration, which destroys the stream
    }
    if (total <= max) {
      chunks.push(buf);
    }
  }
  if (total > max) {
    throw new RegistryError(code, `body larger than ${max} bytes`, undefined, { status: 413 });
  }
  return Buffer.concat(chunks);
}
