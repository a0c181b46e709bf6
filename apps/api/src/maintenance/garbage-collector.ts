import type { Redis } from 'ioredis';
import { parseManifest, ParsedManifest } from '@stratum/oci';
import { blobsOf, RegistryKeys } from '@stratum/registry';
import { BlobDigest, BlobStore, isBlobDigest, RepositoryStore } from '@stratum/storage';

/** Manifests are small; a larger blob is a layer or a context and is never read while marking. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Redis records whose digests are roots: builds (context, image), containers (image, commits), pushes. */
const RECORD_KEY = /^stratum:(build|container|push):[^:]+$/;
const CACHE_PATTERN = 'stratum:cache:*';

export interface GcOptions {
  /** Blobs written less than this long ago are never deleted. */
  readonly graceMs: number;
  /** Test hook: runs between the first mark and the sweep. */
  readonly afterMark?: () => Promise<void>;
  /** Only count, delete nothing. */
  readonly dryRun?: boolean;
}

export interface GcResult {
  readonly freed: { blobs: number; bytes: number };
  readonly stats: {
    marked: number;
    scanned: number;
    young: number;
    unknownAge: number;
    rescued: number;
  };
  readonly deleted: BlobDigest[];
}

async function readAll(stream: NodeJS.ReadableStream, max: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) {
      return null;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/**
 * Mark-and-sweep garbage collection of the blob store, safe while pushes and builds run.
 *
 * Mark: every manifest linked to or tagged in a repository (with its config, layers and, for an
 * index, its children), every layer the build cache (`stratum:cache:*`) names, and every digest
 * a build, container or push record holds (contexts of builds still on record, their images).
 * Sweep: a blob not marked is deleted only when it is older than the grace period (fs mtime, S3
 * LastModified) — an upload, a build step or a push in progress writes young blobs, whose
 * manifest or cache entry comes later — and only when a second full mark, taken right before
 * deleting, still does not reach it (a manifest pushed during the run may name an old blob).
 * An upload session's bytes live outside the blob store (registry/uploads), so sessions hold
 * no blob; their temp files are swept separately.
 */
export class GarbageCollector {
  constructor(
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
    private readonly redis: Redis,
  ) {}

  async run(options: GcOptions): Promise<GcResult> {
    const stats = { marked: 0, scanned: 0, young: 0, unknownAge: 0, rescued: 0 };
    const marked = await this.mark();
    stats.marked = marked.size;
    await options.afterMark?.();
    const now = Date.now();
    const candidates: { digest: BlobDigest; size: number }[] = [];
    for await (const digest of this.blobs.list()) {
      stats.scanned++;
      if (marked.has(digest)) {
        continue;
      }
      const s = await this.blobs.stat(digest);
      if (!s.exists) {
        continue;
      }
      if (s.modifiedAt === undefined) {
        stats.unknownAge++;
      } else if (now - s.modifiedAt.getTime() < options.graceMs) {
        stats.young++;
      } else {
        candidates.push({ digest, size: s.size });
      }
    }
    const freed = { blobs: 0, bytes: 0 };
    const deleted: BlobDigest[] = [];
    if (candidates.length === 0) {
      return { freed, stats, deleted };
    }
    // Re-check right before deleting: whatever became referenced since the first mark stays.
    const recheck = await this.mark();
    for (const c of candidates) {
      if (recheck.has(c.digest)) {
        stats.rescued++;
        continue;
      }
      const s = await this.blobs.stat(c.digest);
      if (!s.exists || s.modifiedAt === undefined || Date.now() - s.modifiedAt.getTime() < options.graceMs) {
        stats.rescued++;
        continue;
      }
      if (options.dryRun === true || (await this.blobs.delete(c.digest))) {
        freed.blobs++;
        freed.bytes += c.size;
        deleted.push(c.digest);
      }
    }
    return { freed, stats, deleted };
  }

  /**
   * What each repository holds for REPOSITORY_QUOTAS: the manifests it links or tags and what
   * they reference (config, layers, an index's children), plus the blobs `counted` says it was
   * given that it still links and the store still has (layers pushed ahead of their manifest, or
   * left linked by a deleted image until this run's sweep deletes their bytes), each with its
   * stored size.
   */
  async heldByRepository(
    counted: (repository: string) => Promise<Map<string, number>>,
  ): Promise<Map<string, Map<string, number>>> {
    const held = new Map<string, Map<string, number>>();
    for (const repository of await this.repositories.listRepositories()) {
      const reached = new Set<string>();
      for (const digest of await this.repositories.listManifests(repository)) {
        await this.walk(digest, reached);
      }
      for (const tag of await this.repositories.listTags(repository)) {
        const digest = await this.repositories.getTag(repository, tag);
        if (digest !== null) {
          await this.walk(digest, reached);
        }
      }
      for (const d of (await counted(repository)).keys()) {
        if (!reached.has(d) && isBlobDigest(d) && (await this.repositories.hasBlob(repository, d))) {
          reached.add(d);
        }
      }
      const sizes = new Map<string, number>();
      for (const d of reached) {
        const s = isBlobDigest(d) ? await this.blobs.stat(d) : { exists: false as const };
        if (s.exists) {
          sizes.set(d, s.size);
        }
      }
      held.set(repository, sizes);
    }
    return held;
  }

  /** Every blob digest reachable from a root. */
  async mark(): Promise<Set<string>> {
    const marked = new Set<string>();
    for (const repository of await this.repositories.listRepositories()) {
      for (const digest of await this.repositories.listManifests(repository)) {
        await this.walk(digest, marked);
      }
      for (const tag of await this.repositories.listTags(repository)) {
        const digest = await this.repositories.getTag(repository, tag);
        if (digest !== null) {
          await this.walk(digest, marked);
        }
      }
    }
    await this.scan(CACHE_PATTERN, async (keys) => {
      const values = await this.redis.mget(keys);
      for (const json of values) {
        const digest = json === null ? null : cacheLayerDigest(json);
        if (digest !== null) {
          marked.add(digest);
        }
      }
    });
    await this.scan('stratum:*', async (keys) => {
      for (const key of keys.filter((k) => RECORD_KEY.test(k))) {
        let json: string | null;
        try {
          json = await this.redis.get(key);
        } catch {
          continue; // not a string value (WRONGTYPE)
        }
        if (json === null) {
          continue;
        }
        for (const digest of digestsIn(json)) {
          await this.walk(digest, marked);
        }
      }
    });
    return marked;
  }

  /**
   * Marks a digest and, when it is a manifest, what it references. `marked` is the memo: each
   * manifest is read once however many indexes name it, and the walk keeps its own stack, so a
   * deep chain of indexes cannot overflow the call stack. No index limits here (issue 13 item 4
   * bounds pushes and PUTs): stopping short would leave reachable blobs unmarked and delete them,
   * and failing the run would stop GC for good; the memo keeps the work linear in the manifests
   * stored.
   */
  private async walk(root: string, marked: Set<string>): Promise<void> {
    const pending: string[] = [root];
    for (let digest = pending.pop(); digest !== undefined; digest = pending.pop()) {
      if (!isBlobDigest(digest) || marked.has(digest)) {
        continue;
      }
      marked.add(digest);
      const parsed = await this.readManifest(digest);
      if (parsed === null) {
        continue;
      }
      for (const d of blobsOf(parsed)) {
        marked.add(d.digest);
      }
      if (parsed.kind === 'oci-manifest' || parsed.kind === 'docker-manifest') {
        // blobsOf leaves out non-distributable layers with urls; keep them too if we hold them.
        for (const d of parsed.manifest.layers) {
          marked.add(d.digest);
        }
      } else {
        for (const child of parsed.manifest.manifests) {
          if (!marked.has(child.digest)) {
            pending.push(child.digest);
          }
        }
      }
    }
  }

  private async readManifest(digest: BlobDigest): Promise<ParsedManifest | null> {
    const s = await this.blobs.stat(digest);
    if (!s.exists || s.size > MAX_MANIFEST_BYTES) {
      return null;
    }
    try {
      const bytes = await readAll(await this.blobs.get(digest), MAX_MANIFEST_BYTES);
      if (bytes === null || bytes[0] !== 0x7b /* { */) {
        return null;
      }
      const parsed = parseManifest(bytes);
      return parsed.ok ? parsed : null;
    } catch {
      return null; // deleted meanwhile: nothing to walk
    }
  }

  private async scan(pattern: string, visit: (keys: string[]) => Promise<void>): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) {
        await visit(keys);
      }
    } while (cursor !== '0');
  }
}

/** The layer digest of a build cache record (`stratum:cache:<key>`), if any. */
function cacheLayerDigest(json: string): string | null {
  try {
    const v = JSON.parse(json) as { layer?: { digest?: unknown } | null };
    return typeof v.layer?.digest === 'string' ? v.layer.digest : null;
  } catch {
    return null;
  }
}

/** Every `sha256:` digest in a record's JSON (contextDigest, imageDigest, manifestDigest…). */
export function digestsIn(json: string): string[] {
  return [...new Set(json.match(/sha256:[a-f0-9]{64}/g) ?? [])];
}

/** Referrers set key of a manifest with a subject (for retention's clean-up). */
export function referrersKeyOf(repository: string, parsed: ParsedManifest): string | null {
  return (parsed.kind === 'oci-manifest' || parsed.kind === 'oci-index') && parsed.manifest.subject
    ? RegistryKeys.referrers(repository, parsed.manifest.subject.digest)
    : null;
}
