// Archiving files of a directory with the codec of tar-format.ts: build contexts (the CLI's
// upload, git checkouts of webhook builds).
import { createReadStream, lstatSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { OutputBuffer } from './output-buffer';
import { encodeHeader, END_OF_ARCHIVE, padding } from './tar-format';

/** Files up to this size are read whole ; bigger ones are streamed. */
const SMALL_FILE = 256 * 1024;
/** Output is handed on in chunks of about this size. */
const OUT_CHUNK = 1024 * 1024;
/** Longest run of synchronous reads before the event loop gets a turn (the API runs this too). */
const SYNC_SLICE_MS = 10;

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
 * Synchronous on purpose: a small file costs ~5 async thread-pool round trips (lstat, open,
 * fstat, read, close) against a few microseconds of real work. The event loop still gets a turn
 * every {@link SYNC_SLICE_MS} ms, so a server process (webhook builds) keeps answering.
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
  return new Error(`${rel} changed while it was being archived`);
}

/** A file from elsewhere, archived under another name (the CLI's outside Dockerfile). */
export interface ExtraFile {
  readonly source: string;
  readonly name: string;
}

/**
 * The tar of `files` (paths relative to `dir`, `/`-separated, parents before children; nothing
 * is recursed into) and then of `extra`, as a deterministic archive with portable headers:
 * numeric ids 0, no uname/gname, node-tar's portable modes, no directory mtimes, hard links
 * within the archive kept. Sockets are skipped. Fails when a file changes size while it is read.
 * Build contexts are written by this, from the CLI and from git checkouts.
 */
export async function* tarFiles(
  dir: string,
  files: readonly string[],
  extra: readonly ExtraFile[] = [],
): AsyncGenerator<Buffer> {
  const root = resolve(dir);
  const todo: [string, string][] = files.map((f) => [join(root, f), f]);
  for (const e of extra) {
    todo.push([e.source, e.name]);
  }
  const links = new Map<string, string>();
  const buf = new OutputBuffer();
  let sliceStart = performance.now();
  for (const [abs, name] of todo) {
    if (performance.now() - sliceStart >= SYNC_SLICE_MS) {
      await new Promise<void>((r) => setImmediate(r));
      sliceStart = performance.now();
    }
    const e = prepare(abs, name);
    const { rel, st } = e;
    const mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isDirectory()) {
      buf.push(
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
      buf.push(
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
        buf.push(
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
        buf.push(
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
          buf.push(e.content);
        } else {
          let got = 0;
          for await (const chunk of createReadStream(e.abs, {
            highWaterMark: OUT_CHUNK,
          }) as AsyncIterable<Buffer>) {
            got += chunk.length;
            if (got > st.size) {
              throw changed(rel);
            }
            buf.push(chunk);
            if (buf.size >= OUT_CHUNK) {
              yield buf.take();
            }
          }
          if (got !== st.size) {
            throw changed(rel);
          }
        }
        buf.push(Buffer.alloc(padding(st.size)));
      }
    } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
      const type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : 'block';
      buf.push(
        encodeHeader({ path: rel, type, mode: portableMode(st.mode, false), size: 0, mtime, linkpath: '' }),
      );
    }
    // Sockets are not sent (nor by Docker).
    if (buf.size >= OUT_CHUNK) {
      yield buf.take();
    }
  }
  buf.push(END_OF_ARCHIVE);
  yield buf.take();
}
