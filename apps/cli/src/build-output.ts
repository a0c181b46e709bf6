import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as Tar from 'tar';
import { ApiError } from './api-client';

/**
 * One `--output` of `stratum build`, as `docker buildx build --output` reads it
 * (https://docs.docker.com/reference/cli/docker/buildx/build/#output): `type=local,dest=DIR`
 * (the final stage's files), `type=tar,dest=FILE|-` (the same as a tar), `type=oci,dest=FILE|-`
 * (the image as an OCI image layout tar). `-` alone means `type=tar,dest=-`; a bare path means
 * `type=local,dest=PATH`. The image itself is always in Stratum's registry as well.
 */
export interface BuildOutputSpec {
  readonly type: 'local' | 'tar' | 'oci';
  /** A directory (local), a file, or `-` for stdout. */
  readonly dest: string;
}

export function parseOutputSpec(spec: string): BuildOutputSpec {
  const bad = (why: string): ApiError => new ApiError(0, 'BAD_REQUEST', `--output ${spec}: ${why}`);
  if (spec === '-') {
    return { type: 'tar', dest: '-' };
  }
  if (!spec.includes('=')) {
    if (spec === '') {
      throw bad('empty');
    }
    return { type: 'local', dest: spec };
  }
  const fields = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      throw bad(`expected key=value fields, got "${part}"`);
    }
    fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const type = fields.get('type') ?? 'local';
  if (type === 'image' || type === 'registry' || type === 'docker') {
    throw bad(
      `type=${type} is not an output here: the image is always written to Stratum's registry (-t names it, --push copies it to another registry)`,
    );
  }
  if (type !== 'local' && type !== 'tar' && type !== 'oci') {
    throw bad(`unknown type "${type}" (local, tar, oci)`);
  }
  for (const key of fields.keys()) {
    if (key !== 'type' && key !== 'dest') {
      throw bad(`unknown field "${key}" (type, dest)`);
    }
  }
  const dest = fields.get('dest');
  if (dest === undefined || dest === '') {
    throw bad('dest= is required');
  }
  if (type === 'local' && dest === '-') {
    throw bad('type=local needs a directory as dest (use type=tar,dest=- for stdout)');
  }
  return { type, dest };
}

/**
 * Writes what the server streams for `spec`: a tar to a file or stdout, or unpacked into a
 * directory (type=local: node-tar refuses paths and links leading out of it; files are owned by
 * whoever runs the CLI unless that is root, as buildx's local exporter).
 */
export async function writeOutput(
  spec: BuildOutputSpec,
  body: Readable,
  stdout: Writable = process.stdout,
): Promise<void> {
  if (spec.type === 'local') {
    await mkdir(spec.dest, { recursive: true });
    // Loaded here, not at start: every CLI run would pay for it, only --output uses it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- deferred on purpose
    const tar = require('tar') as typeof Tar;
    await pipeline(body, tar.x({ cwd: spec.dest, preservePaths: false, strict: false, chmod: true }));
    return;
  }
  if (spec.dest === '-') {
    await pipeline(body, stdout, { end: false });
    return;
  }
  await pipeline(body, createWriteStream(spec.dest));
}
