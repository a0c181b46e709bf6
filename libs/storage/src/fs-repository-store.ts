import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobDigest } from './blob-store';
import { isBlobDigest, parseBlobDigest } from './digest';
import { errnoCode, readdirOrEmpty, unlinkQuietly, wrapFsError, writeFileAtomic } from './fs-util';
import { assertRepositoryName, assertTagName, isTagName, RepositoryStore } from './repository-store';

/**
 * Directory names that hold a repository's metadata. Repository path components must start with
 * `[a-z0-9]`, so these can never clash with a nested repository (`a` and `a/b` share `a/`).
 */
const TAGS = '_tags';
const MANIFESTS = '_manifests';
const LAYERS = '_layers';
const MARKERS = [TAGS, MANIFESTS, LAYERS];

/**
 * {@link RepositoryStore} on a local directory, beside {@link FsBlobStore}'s blobs:
 * `root/repositories/<repo>/_tags/<tag>` holds a digest; `_manifests/sha256/<hex>` and
 * `_layers/sha256/<hex>` are link files. Every write is a temp file + rename.
 */
export class FsRepositoryStore implements RepositoryStore {
  private readonly reposDir: string;
  private readonly tmpDir: string;

  constructor(readonly root: string) {
    this.reposDir = join(root, 'repositories');
    this.tmpDir = join(root, 'tmp');
  }

  private repoDir(repository: string): string {
    // The grammar admits no '.', '..' or empty components, so this stays under reposDir.
    return join(this.reposDir, ...assertRepositoryName(repository).split('/'));
  }

  async setTag(repository: string, tag: string, digest: BlobDigest): Promise<void> {
    const dir = join(this.repoDir(repository), TAGS);
    assertTagName(tag);
    parseBlobDigest(digest);
    if ((await readOrNull(join(dir, tag))) === digest) {
      return; // already there: a rebuild that gives the same image writes (and fsyncs) nothing
    }
    await writeFileAtomic(this.tmpDir, join(dir, tag), dir, digest);
  }

  async getTag(repository: string, tag: string): Promise<BlobDigest | null> {
    const path = join(this.repoDir(repository), TAGS, assertTagName(tag));
    const content = await readOrNull(path);
    return content !== null && isBlobDigest(content) ? content : null;
  }

  async listTags(repository: string): Promise<string[]> {
    return (await readdirOrEmpty(join(this.repoDir(repository), TAGS))).filter(isTagName).sort();
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    const path = join(this.repoDir(repository), TAGS, assertTagName(tag));
    try {
      return await unlinkQuietly(path);
    } catch (err) {
      throw wrapFsError(err);
    }
  }

  async listRepositories(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (dir: string, name: string): Promise<void> => {
      const entries = await readdirOrEmpty(dir);
      if (name !== '' && (await hasContent(dir, entries))) {
        found.push(name);
      }
      for (const entry of entries) {
        if (!MARKERS.includes(entry)) {
          await walk(join(dir, entry), name === '' ? entry : `${name}/${entry}`);
        }
      }
    };
    await walk(this.reposDir, '');
    return found.sort();
  }

  async hasRepository(repository: string): Promise<boolean> {
    const dir = this.repoDir(repository);
    return hasContent(dir, await readdirOrEmpty(dir));
  }

  async linkManifest(repository: string, digest: BlobDigest): Promise<void> {
    await this.link(repository, MANIFESTS, digest);
  }

  async hasManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.hasLink(repository, MANIFESTS, digest);
  }

  async unlinkManifest(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.unlink(repository, MANIFESTS, digest);
  }

  async listManifests(repository: string): Promise<BlobDigest[]> {
    const names = await readdirOrEmpty(join(this.repoDir(repository), MANIFESTS, 'sha256'));
    return names
      .map((hex) => `sha256:${hex}`)
      .filter(isBlobDigest)
      .sort();
  }

  async linkBlob(repository: string, digest: BlobDigest): Promise<void> {
    await this.link(repository, LAYERS, digest);
  }

  async hasBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.hasLink(repository, LAYERS, digest);
  }

  async unlinkBlob(repository: string, digest: BlobDigest): Promise<boolean> {
    return this.unlink(repository, LAYERS, digest);
  }

  private linkPath(repository: string, kind: string, digest: BlobDigest): { dir: string; path: string } {
    const { hex } = parseBlobDigest(digest);
    const dir = join(this.repoDir(repository), kind, 'sha256');
    return { dir, path: join(dir, hex) };
  }

  private async link(repository: string, kind: string, digest: BlobDigest): Promise<void> {
    const { dir, path } = this.linkPath(repository, kind, digest);
    // A link is named by its digest and holds only it, so one that exists is the one wanted.
    if ((await readOrNull(path)) === digest) {
      return;
    }
    await writeFileAtomic(this.tmpDir, path, dir, digest);
  }

  private async hasLink(repository: string, kind: string, digest: BlobDigest): Promise<boolean> {
    const { path } = this.linkPath(repository, kind, digest);
    try {
      return (await stat(path)).isFile();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') {
        return false;
      }
      throw wrapFsError(err);
    }
  }

  private async unlink(repository: string, kind: string, digest: BlobDigest): Promise<boolean> {
    const { path } = this.linkPath(repository, kind, digest);
    try {
      return await unlinkQuietly(path);
    } catch (err) {
      throw wrapFsError(err);
    }
  }
}

async function readOrNull(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return null;
    }
    throw wrapFsError(err);
  }
}

/** A repository exists while any of its marker directories has an entry. */
async function hasContent(dir: string, entries: string[]): Promise<boolean> {
  for (const marker of MARKERS) {
    if (!entries.includes(marker)) {
      continue;
    }
    const sub = join(dir, marker);
    const names = await readdirOrEmpty(sub);
    if (marker === TAGS ? names.length > 0 : (await readdirOrEmpty(join(sub, 'sha256'))).length > 0) {
      return true;
    }
  }
  return false;
}
