import { createReadStream, lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { planContextFiles } from '@stratum/dockerfile';
import type * as Tar from '@stratum/tar';

export interface ContextPlan {
  /** Context-relative paths to send, parents before children. */
  readonly files: string[];
  /** The Dockerfile path inside the context, as sent to the API. */
  readonly dockerfile: string;
  /** Set when the Dockerfile lies outside the context and is sent under this name. */
  readonly extraDockerfile: { readonly source: string; readonly name: string } | null;
}

const OUTSIDE_DOCKERFILE = '.stratum.Dockerfile';

/**
 * Decides what of `dir` is sent: everything .dockerignore does not exclude, and always the
 * Dockerfile and .dockerignore themselves, as Docker does (the walk is `planContextFiles`).
 */
export async function planContext(
  dir: string,
  dockerfile: string | undefined,
  cwd: string,
): Promise<ContextPlan> {
  const root = resolve(dir);
  const dfPath = dockerfile === undefined ? join(root, 'Dockerfile') : resolve(cwd, dockerfile);
  const relDf = relative(root, dfPath);
  const inside = relDf !== '' && relDf !== '..' && !relDf.startsWith(`..${sep}`) && !isAbsolute(relDf);
  const files = await planContextFiles(root, inside ? relDf.split(sep).join('/') : '', { skipGitDir: false });
  if (inside) {
    await lstat(dfPath); // fails clearly when the Dockerfile does not exist
    return { files, dockerfile: relDf.split(sep).join('/'), extraDockerfile: null };
  }
  await lstat(dfPath);
  return {
    files,
    dockerfile: OUTSIDE_DOCKERFILE,
    extraDockerfile: { source: dfPath, name: OUTSIDE_DOCKERFILE },
  };
}

let tarLib: typeof Tar | undefined;
/**
 * @stratum/tar, loaded when a context is first tarred rather than at start-up: `stratum --help`,
 * `logs` or `builds` never need it, and every module loaded costs the CLI's start time.
 */
function tarCodec(): typeof Tar {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- deferred on purpose, see above
  tarLib ??= require('@stratum/tar') as typeof Tar;
  return tarLib;
}

/** Files up to this size are read whole ; bigger ones are streamed. */
const SMALL_FILE = 256 * 1024;
/** Output is handed on in chunks of about this size. */
const OUT_CHUNK = 1024 * 1024;

interface Prepared {
  readonly abs: string;
  readonly rel: string;
  readonly st: Stats;
  readonly linkpath: string;
  readonly content: Buffer | null;
}

/** node-tar's `portable` modes: at least u+rw, no g/o write; readable dirs are listable. */
function portableMode(mode: number, isDir: boolean): number {
  let m = ((mode & 0o7777) | 0o600) & ~0o22;
  if (isDir) {
    m |= (m & 0o444) >> 2;
  }
  return m;
}

/**
 * Synchronous on purpose: the CLI process has nothing else to run meanwhile except the upload,
 * and a small file costs ~5 async thread-pool round trips (lstat, open, fstat, read, close)
 * against a few microseconds of real work; the event loop gets a turn at every output chunk.
 */
function prepare(abs: string, rel: string): Prepared {
  const st = lstatSync(abs);
  if (st.isSymbolicLink()) {
    return { abs, rel, st, linkpath: readlinkSync(abs), content: null };
  }
  if (st.isFile() && st.size <= SMALL_FILE) {
    return { abs, rel, st, linkpath: '', content: readFileSync(abs) };
  }
  return { abs, rel, st, linkpath: '', content: null };
}

function changed(rel: string): Error {
  return new Error(`${rel} changed while the build context was being sent`);
}

async function* contextEntries(dir: string, plan: ContextPlan): AsyncGenerator<Buffer> {
  const { encodeHeader, END_OF_ARCHIVE, padding } = tarCodec();
  const root = resolve(dir);
  const todo: [string, string][] = plan.files.map((f) => [join(root, f), f]);
  if (plan.extraDockerfile !== null) {
    todo.push([plan.extraDockerfile.source, plan.extraDockerfile.name]);
  }
  const links = new Map<string, string>();
  let out: Buffer[] = [];
  let outBytes = 0;
  const push = (b: Buffer): void => {
    out.push(b);
    outBytes += b.length;
  };
  const take = (): Buffer => {
    const b = Buffer.concat(out, outBytes);
    out = [];
    outBytes = 0;
    return b;
  };
  for (const [abs, name] of todo) {
    const e = prepare(abs, name);
    const { rel, st } = e;
    const mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isDirectory()) {
      push(
        encodeHeader({
          path: `${rel}/`,
          type: 'dir',
          mode: portableMode(st.mode, true),
          size: 0,
          mtime: 0,
          linkpath: '',
        }),
      );
    } else if (st.isSymbolicLink()) {
      push(
        encodeHeader({
          path: rel,
          type: 'symlink',
          mode: portableMode(st.mode, false),
          size: 0,
          mtime,
          linkpath: e.linkpath,
        }),
      );
    } else if (st.isFile()) {
      const inode = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? links.get(inode) : undefined;
      if (first !== undefined) {
        push(
          encodeHeader({
            path: rel,
            type: 'link',
            mode: portableMode(st.mode, false),
            size: 0,
            mtime,
            linkpath: first,
          }),
        );
      } else {
        if (st.nlink > 1) {
          links.set(inode, rel);
        }
        push(
          encodeHeader({
            path: rel,
            type: 'file',
            mode: portableMode(st.mode, false),
            size: st.size,
            mtime,
            linkpath: '',
          }),
        );
        if (e.content !== null) {
          if (e.content.length !== st.size) {
            throw changed(rel);
          }
          push(e.content);
        } else {
          let got = 0;
          for await (const chunk of createReadStream(e.abs, {
            highWaterMark: OUT_CHUNK,
          }) as AsyncIterable<Buffer>) {
            got += chunk.length;
            if (got > st.size) {
              throw changed(rel);
            }
            push(chunk);
            if (outBytes >= OUT_CHUNK) {
              yield take();
            }
          }
          if (got !== st.size) {
            throw changed(rel);
          }
        }
        push(Buffer.alloc(padding(st.size)));
      }
    } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
      const type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : 'block';
      push(
        encodeHeader({ path: rel, type, mode: portableMode(st.mode, false), size: 0, mtime, linkpath: '' }),
      );
    }
    // Sockets are not sent (nor by Docker).
    if (outBytes >= OUT_CHUNK) {
      yield take();
    }
  }
  push(END_OF_ARCHIVE);
  yield take();
}

/**
 * Streams the planned context as a deterministic tar with portable headers (numeric ids 0, no
 * uname/gname, node-tar's portable modes, no directory mtimes), written by our own encoder.
 * A Dockerfile from outside the context is appended under its in-context name.
 */
export async function tarContext(
  dir: string,
  plan: ContextPlan,
): Promise<{ stream: Readable; cleanup: () => void }> {
  return Promise.resolve({ stream: Readable.from(contextEntries(dir, plan)), cleanup: () => undefined });
}
