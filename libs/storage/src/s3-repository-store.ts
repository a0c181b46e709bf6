import { Client } from 'minio';
import { BlobDigest } from './blob-store';
import { isBlobDigest, parseBlobDigest } from './digest';
import { assertRepositoryName, assertTagName, isTagName, RepositoryStore } from './repository-store';
import { isS3NotFound, listObjects, mapS3Error, removeQuietly, statOrNull } from './s3-util';

const ROOT = 'repositories/';
/** Repository path components start with `[a-z0-9]`, so `/_` always ends the repository part of a key. */
const TAGS = '_tags';
const MANIFESTS = '_manifests';
const LAYERS = '_layers';

/**
 * {@link RepositoryStore} as small objects in the blob bucket:
 * `repositories/<repo>/_tags/<tag>` (body: the digest), `repositories/<repo>/_manifests/sha256/<hex>`
 * and `repositories/<repo>/_layers/sha256/<hex>` (link objects). A PutObject is atomic, so a tag
 * is always either the old or the new digest.
 *
 * `listRepositories` lists every metadata key: fine for thousands of repositories; a catalog
 * index would be needed beyond that.
 */
export class S3RepositoryStore implements RepositoryStore {
  constructor(
    private readonly client: Client,
    readonly bucket: string,
  ) {}

  private prefix(repository: string): string {
    return `${ROOT}${assertRepositoryName(repository)}/`;
  }

  private tagKey(repository: string, tag: string): string {
    return `${this.prefix(repository)}${TAGS}/${assertTagName(tag)}`;
  }

  private linkKey(repository: string, kind: string, digest: BlobDigest): string {
    const { hex } = parseBlobDigest(digest);
    return `${this.prefix(repository)}${kind}/sha256/${hex}`;
  }

  async setTag(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    const key = this.tagKey(repository, tag);
    parseBlobDigest(digest);
    await this.putSmall(key, digest);
  }

  async getTag(repository: string, tag: string): Promise<BlobDigest | null> {
    const key = this.tagKey(repository, tag);
    try {
      const stream = await this.client.getObject(this.bucket, key);
      const chunks: Buffer[] = [];
      for await (const c of stream) {
        chunks.push(c as Buffer);
      }
      const content = Buffer.concat(chunks).toString('utf8').trim();
      return isBlobDigest(content) ? content : null;
    } catch (err) {
      if (isS3NotFound(err)) {
        return null;
      }
      throw mapS3Error(err, `reading tag ${repository}:${tag}`);
    }
  }

  async listTags(repository: string): Promise<string[]> {
    const prefix = `${this.prefix(repository)}${TAGS}/`;
    const tags: string[] = [];
    for await (const item of listObjects(this.client, this.bucket, prefix)) {
      const tag = (item.name ?? '').slice(prefix.length);
      if (isTagName(tag)) {
        tags.push(tag);
      }
    }
    return tags.sort();
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.removeIfPresent(this.tagKey(repository, tag));
  }

  async listRepositories(): Promise<string[]> {
    const found = new Set<string>();
    for await (const item of listObjects(this.client, this.bucket, ROOT)) {
      const rest = (item.name ?? '').slice(ROOT.length);
      const end = rest.indexOf('/_');
      if (end > 0) {
        found.add(rest.slice(0, end));
      }
    }
    return [...found].sort();
  }

  async hasRepository(repository: string): Promise<boolean> {
    const base = this.prefix(repository);
    for (const kind of [TAGS, MANIFESTS, LAYERS]) {
      for await (const _item of listObjects(this.client, this.bucket, `${base}${kind}/`)) {
        return true;
      }
    }
    return false;
  }

  async linkManifest(repository: string, digest: BlobDigest): Promise<void> {
    await this.putSmall(this.linkKey(repository, MANIFESTS, digest), digest);
  }

  async hasManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    return (await statOrNull(this.client, this.bucket, this.linkKey(repository, MANIFESTS, digest))) !== null;
  }

  async unlinkManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.removeIfPresent(this.linkKey(repository, MANIFESTS, digest));
  }

  async listManifests(repository: string): Promise<BlobDigest[]> {
    const prefix = `${this.prefix(repository)}${MANIFESTS}/sha256/`;
    const out: BlobDigest[] = [];
    for await (const item of listObjects(this.client, this.bucket, prefix)) {
      const digest = `sha256:${(item.name ?? '').slice(prefix.length)}`;
      if (isBlobDigest(digest)) {
        out.push(digest);
      }
    }
    return out.sort();
  }

  async linkBlob(repository: string, digest: BlobDigest): Promise<void> {
    await this.putSmall(this.linkKey(repository, LAYERS, digest), digest);
  }

  async hasBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    return (await statOrNull(this.client, this.bucket, this.linkKey(repository, LAYERS, digest))) !== null;
  }

  async unlinkBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.removeIfPresent(this.linkKey(repository, LAYERS, digest));
  }

  private async putSmall(key: string, content: string): Promise<void> {
    try {
      await this.client.putObject(this.bucket, key, Buffer.from(content), content.length, {
        'Content-Type': 'text/plain',
      });
    } catch (err) {
      throw mapS3Error(err, `writing ${key}`);
    }
  }

  private async removeIfPresent(key: string): Promise<boolean> {
    if ((await statOrNull(this.client, this.bucket, key)) === null) {
      return false;
    }
    await removeQuietly(this.client, this.bucket, key);
    return true;
  }
}
