import { Readable } from 'node:stream';
import { tarFiles } from '@stratum/tar';

/** Streams `files` of `dir` as a tar with portable headers (no uname/gname, no recursion), as the CLI does. */
export function tarContextFiles(dir: string, files: readonly string[]): Readable {
  return Readable.from(tarFiles(dir, files));
}
