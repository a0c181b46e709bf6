import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { create as createTar } from 'tar';

/** Streams `files` of `dir` as a tar with portable headers (no uname/gname, no recursion). */
export function tarContextFiles(dir: string, files: readonly string[]): Readable {
  const pack = createTar({ cwd: resolve(dir), portable: true, noDirRecurse: true }, [...files]);
  return Readable.from(pack as AsyncIterable<Buffer>);
}
