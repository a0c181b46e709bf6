import type { Redis } from 'ioredis';
import { parseManifest, ParsedManifest } from '@stratum/oci';
import { BlobDigest, BlobStore, isStorageError, RepositoryStore } from '@stratum/storage';
import { referrersKeyOf } from './garbage-collector';

export interface RetentionOptions {
  /** Newest tags kept per repository; 0 keeps every tag. */
  readonly keepTags: number;
  /** Untagged manifests older than this many days are unlinked; 0 keeps them. */
  readonly untaggedDays: number;
  /** Repository patterns (`*` matches any run of characters). */
  readonly repositories: readonly string[];
}

export interface RetentionResult {
  tags: number;
  manifests: number;
}

function patternMatches(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(name);
}

/**
 * Retention per repository: keeps the `keepTags` newest tags (by when their manifest was
 * written) and unlinks untagged manifests older than `untaggedDays` that nothing live needs
 * (not a child of a kept index, not a referrer of a kept manifest). Unlinked blobs are then
 * garbage collection's to reclaim.
 */
export async function applyRetention(
  blobs: BlobStore,
  repositories: RepositoryStore,
  redis: Redis,
  options: RetentionOptions,
): Promise<RetentionResult> {
  const result: RetentionResult = { tags: 0, manifests: 0 };
  if (options.keepTags === 0 && options.untaggedDays === 0) {
    return result;
  }
  const modified = async (d: BlobDigest): Promise<number> => {
    const s = await blobs.stat(d);
    return s.exists && s.modifiedAt !== undefined ? s.modifiedAt.getTime() : Date.now();
  };
  for (const repository of await repositories.listRepositories()) {
    if (!options.repositories.some((p) => patternMatches(p, repository))) {
      continue;
    }
    const tagged: { tag: string; digest: BlobDigest; at: number }[] = [];
    for (const tag of await repositories.listTags(repository)) {
      const digest = await repositories.getTag(repository, tag);
      if (digest !== null) {
        tagged.push({ tag, digest, at: await modified(digest) });
      }
    }
    if (options.keepTags > 0 && tagged.length > options.keepTags) {
      tagged.sort((a, b) => b.at - a.at || (a.tag < b.tag ? 1 : -1));
      for (const t of tagged.splice(options.keepTags)) {
        // An IMMUTABLE_TAGS tag stays, whatever the retention policy says.
        if (await repositories.deleteTag(repository, t.tag).catch(keepImmutable)) {
          result.tags++;
        }
      }
    }
    if (options.untaggedDays === 0) {
      continue;
    }
    const cutoff = Date.now() - options.untaggedDays * 86_400_000;
    const manifests = new Map<BlobDigest, ParsedManifest | null>();
    for (const d of await repositories.listManifests(repository)) {
      manifests.set(d, await readManifest(blobs, d));
    }
    // Live: tagged, children of live indexes, referrers of live manifests — to a fixed point.
    const live = new Set<string>(tagged.map((t) => t.digest));
    let grew = true;
    while (grew) {
      grew = false;
      for (const [d, parsed] of manifests) {
        if (parsed === null) {
          continue;
        }
        const subject =
          (parsed.kind === 'oci-manifest' || parsed.kind === 'oci-index') && parsed.manifest.subject
            ? parsed.manifest.subject.digest
            : null;
        if (!live.has(d) && subject !== null && live.has(subject)) {
          live.add(d);
          grew = true;
        }
        if (live.has(d) && (parsed.kind === 'oci-index' || parsed.kind === 'docker-manifest-list')) {
          for (const child of parsed.manifest.manifests) {
            if (!live.has(child.digest)) {
              live.add(child.digest);
              grew = true;
            }
          }
        }
      }
    }
    for (const [d, parsed] of manifests) {
      if (live.has(d) || (await modified(d)) > cutoff) {
        continue;
      }
      if (await repositories.unlinkManifest(repository, d)) {
        result.manifests++;
        const key = parsed === null ? null : referrersKeyOf(repository, parsed);
        if (key !== null) {
          await redis.srem(key, d);
        }
      }
    }
  }
  return result;
}

async function readManifest(blobs: BlobStore, digest: BlobDigest): Promise<ParsedManifest | null> {
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of (await blobs.get(digest)) as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > 4 * 1024 * 1024) {
        return null;
      }
      chunks.push(c);
    }
    const parsed = parseManifest(Buffer.concat(chunks));
    return parsed.ok ? parsed : null;
  } catch {
    return null;
  }
}

function keepImmutable(err: unknown): false {
  if (isStorageError(err, 'TAG_IMMUTABLE')) {
    return false;
  }
  throw err;
}
