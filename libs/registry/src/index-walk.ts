import { ParsedManifest } from '@stratum/oci';
import { BlobDigest, isBlobDigest } from '@stratum/storage';
import { RegistryError } from './registry-error';

/**
 * Bounds on a tree of manifests reached through image indexes (issue 13 item 4). The OCI spec
 * sets none; a hostile index of thousands of entries, each an index of thousands, is a few MB
 * of small documents yet millions of visits when walked naively. Real indexes are small: a
 * multi-platform image with attestations has two entries per platform, nested indexes are rare.
 */
export interface IndexLimits {
  /**
   * Levels of manifests below and including the root: index -> index -> image is 3 (counted along
   * the path a manifest is first reached by; each is walked once).
   */
  readonly maxDepth: number;
  /** Entries of one index. */
  readonly maxEntries: number;
  /** Distinct manifests in one walk (a push, a transfer, a manifest PUT's check). */
  readonly maxManifests: number;
}

/** The limits everything walking indexes applies unless told otherwise. */
export const DEFAULT_INDEX_LIMITS: IndexLimits = { maxDepth: 8, maxEntries: 1000, maxManifests: 5000 };

/** The child manifests of an index (none for an image manifest). */
export function indexChildren(parsed: ParsedManifest): readonly { readonly digest: string }[] {
  return parsed.kind === 'oci-index' || parsed.kind === 'docker-manifest-list'
    ? parsed.manifest.manifests
    : [];
}

/** MANIFEST_INVALID (400) naming the limit; a push job treats it as final (not retried). */
export function indexLimitError(
  limit: keyof IndexLimits,
  value: number,
  limits: IndexLimits,
  where: string,
): RegistryError {
  const what = {
    maxDepth: `nests manifests ${value} levels deep`,
    maxEntries: `has ${value} entries`,
    maxManifests: `reaches more than ${limits.maxManifests} distinct manifests`,
  }[limit];
  return new RegistryError(
    'MANIFEST_INVALID',
    `index ${where} ${what}: over the limit ${limit}=${limits[limit]}`,
    { limit, value, max: limits[limit] },
  );
}

/** Throws when one index has more entries than `limits.maxEntries`. */
export function checkIndexEntries(
  parsed: ParsedManifest,
  where: string,
  limits = DEFAULT_INDEX_LIMITS,
): void {
  const n = indexChildren(parsed).length;
  if (n > limits.maxEntries) {
    throw indexLimitError('maxEntries', n, limits, where);
  }
}

/**
 * Walks the manifests reachable from `root` depth first, each distinct digest once (a memo of
 * visited digests: an index naming the same child a thousand times, or a thousand indexes naming
 * the same children, costs one read each), children before their parent (what a copy needs:
 * nothing is put before what it references). Limits are checked as the walk goes, so a hostile
 * tree fails after at most `maxManifests` reads. `read` returns null for a manifest that is not
 * there or not a manifest (the walk does not descend). `signal` aborts between reads.
 * Returns the digests in that order.
 */
export async function walkManifests(
  root: BlobDigest,
  read: (digest: BlobDigest) => Promise<ParsedManifest | null>,
  options: { limits?: IndexLimits; signal?: AbortSignal; where?: string } = {},
): Promise<BlobDigest[]> {
  const limits = options.limits ?? DEFAULT_INDEX_LIMITS;
  const where = options.where ?? root;
  // Marked when a manifest is expanded (not when first named), so a child named by two siblings
  // is walked under the first sibling that reaches it and still comes before both in `order`.
  const visited = new Set<string>();
  const order: BlobDigest[] = [];
  // An explicit stack (at most maxDepth frames of at most maxEntries names): no recursion.
  const stack: { digest: BlobDigest; depth: number; children: BlobDigest[] | null }[] = [
    { digest: root, depth: 1, children: null },
  ];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.children === null) {
      options.signal?.throwIfAborted();
      if (top.depth > limits.maxDepth) {
        throw indexLimitError('maxDepth', top.depth, limits, where);
      }
      visited.add(top.digest);
      if (visited.size > limits.maxManifests) {
        throw indexLimitError('maxManifests', visited.size, limits, where);
      }
      const parsed = await read(top.digest);
      const children = parsed === null ? [] : indexChildren(parsed);
      if (children.length > limits.maxEntries) {
        throw indexLimitError(
          'maxEntries',
          children.length,
          limits,
          top.digest === root ? where : `${where} (at ${top.digest})`,
        );
      }
      top.children = [];
      for (let i = children.length - 1; i >= 0; i--) {
        const d = children[i].digest;
        if (!isBlobDigest(d)) {
          throw new RegistryError('DIGEST_INVALID', `unsupported digest ${d}`);
        }
        top.children.push(d); // popped from the end: first child first
      }
    }
    let next = top.children.pop();
    while (next !== undefined && visited.has(next)) {
      next = top.children.pop();
    }
    if (next === undefined) {
      order.push(top.digest);
      stack.pop();
    } else {
      stack.push({ digest: next, depth: top.depth + 1, children: null });
    }
  }
  return order;
}
