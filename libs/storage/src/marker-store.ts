import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from 'minio';
import { bufferChunks } from './blob-verifier';
import { errnoCode, unlinkQuietly, wrapFsError, writeFileAtomic } from './fs-util';
import { isS3NotFound, mapS3Error, removeQuietly } from './s3-util';
import { StorageError } from './storage-error';

const MARKER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** Markers are small notes; anything bigger is not one. */
const MAX_MARKER_BYTES = 64 * 1024;

function checkMarker(name: string): void {
  if (!MARKER_NAME.test(name)) {
    throw new StorageError('NAME_INVALID', `invalid marker name ${JSON.stringify(name.slice(0, 80))}`);
  }
}

/**
 * Small named notes in the store, outside the blob and repository namespaces (so garbage
 * collection, fsck and listings never see them): the start-up check that every process sees
 * the same store writes one per process and reads the others' (`probes/<name>`).
 */
export interface MarkerStore {
  write(name: string, content: string): Promise<void>;
  /** The content, or null when there is no such marker. */
  read(name: string): Promise<string | null>;
  delete(name: string): Promise<void>;
}

/** {@link MarkerStore} under `root/probes/`. */
export class FsMarkerStore implements MarkerStore {
  private readonly dir: string;

  constructor(readonly root: string) {
    this.dir = join(root, 'probes');
  }

  async write(name: string, content: string): Promise<void> {
    checkMarker(name);
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFileAtomic(join(this.root, 'tmp'), join(this.dir, name), this.dir, content);
    } catch (err) {
      throw wrapFsError(err);
    }
  }

  async read(name: string): Promise<string | null> {
    checkMarker(name);
    try {
      return await readFile(join(this.dir, name), 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        return null;
      }
      throw wrapFsError(err);
    }
  }

  async delete(name: string): Promise<void> {
    checkMarker(name);
    await unlinkQuietly(join(this.dir, name));
  }

  /** Removes every marker (tests). */
  async clear(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** {@link MarkerStore} as objects `probes/<name>` of the bucket. */
export class S3MarkerStore implements MarkerStore {
  constructor(
    private readonly client: Client,
    private readonly bucket: string,
  ) {}

  async write(name: string, content: string): Promise<void> {
    checkMarker(name);
    const body = Buffer.from(content);
    try {
      await this.client.putObject(this.bucket, `probes/${name}`, body, body.length);
    } catch (err) {
      throw mapS3Error(err, `writing marker ${name}`);
    }
  }

  async read(name: string): Promise<string | null> {
    checkMarker(name);
    try {
      const stream = await this.client.getObject(this.bucket, `probes/${name}`);
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of bufferChunks(stream)) {
        size += chunk.length;
        if (size > MAX_MARKER_BYTES) {
          stream.destroy();
          throw new StorageError('BLOB_TOO_LARGE', `marker ${name} is over ${MAX_MARKER_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
      return Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      if (isS3NotFound(err)) {
        return null;
      }
      throw mapS3Error(err, `reading marker ${name}`);
    }
  }

  async delete(name: string): Promise<void> {
    checkMarker(name);
    await removeQuietly(this.client, this.bucket, `probes/${name}`);
  }
}
