import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { FILE_CHUNK, FileSliceStream, sendStream } from './file-slice-stream';

let dir: string;
let file: string;
// Three chunks and a bit: reads, reuse of both buffers, and a short last read.
const data = randomBytes(3 * FILE_CHUNK + 12345);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'stratum-slice-'));
  file = join(dir, 'blob');
  writeFileSync(file, data);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function slice(start: number, end: number): Promise<FileSliceStream> {
  return new FileSliceStream(await open(file, 'r'), start, end);
}

/** A writable that keeps what it is given only when its callback fires (as a socket would). */
function slowSink(): { sink: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _enc, cb) {
      // Copy now, call back later: a buffer reused before the callback would corrupt nothing
      // here, so also check the bytes are still intact when the callback fires.
      const copy = Buffer.from(chunk);
      setTimeout(() => {
        expect(chunk.equals(copy)).toBe(true);
        parts.push(copy);
        cb();
      }, 5);
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

describe('FileSliceStream', () => {
  it('reads the whole file, and a range of it, as a Readable', async () => {
    const whole: Buffer[] = [];
    for await (const c of await slice(0, data.length - 1)) {
      whole.push(c as Buffer);
    }
    expect(sha(Buffer.concat(whole))).toBe(sha(data));
    const part: Buffer[] = [];
    for await (const c of await slice(FILE_CHUNK - 10, FILE_CHUNK + 9)) {
      part.push(c as Buffer);
    }
    expect(Buffer.concat(part)).toEqual(data.subarray(FILE_CHUNK - 10, FILE_CHUNK + 10));
  });

  it('writeTo sends the same bytes, reusing a buffer only after the writer called back', async () => {
    const { sink, bytes } = slowSink();
    await sendStream(await slice(0, data.length - 1), sink);
    expect(sha(bytes())).toBe(sha(data));
    const ranged = slowSink();
    await sendStream(await slice(5, 2 * FILE_CHUNK + 7), ranged.sink);
    expect(sha(ranged.bytes())).toBe(sha(data.subarray(5, 2 * FILE_CHUNK + 8))); // toEqual walks 8 MB bytewise
  });

  it('writeTo sends an empty slice as an empty body', async () => {
    const { sink, bytes } = slowSink();
    await sendStream(await slice(0, -1), sink);
    expect(bytes()).toHaveLength(0);
  });

  it('serves concurrent HTTP responses intact, and stops when a client hangs up', async () => {
    const results: Promise<void>[] = [];
    const server: Server = createServer((_req, res) => {
      res.setHeader('content-length', String(data.length));
      results.push(slice(0, data.length - 1).then((s) => s.writeTo(res)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const fetchAll = (): Promise<Buffer> =>
      new Promise((resolve, reject) =>
        get(url, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve(Buffer.concat(parts)));
          res.on('error', reject);
        }).on('error', reject),
      );
    try {
      const bodies = await Promise.all([fetchAll(), fetchAll(), fetchAll()]);
      for (const b of bodies) {
        expect(sha(b)).toBe(sha(data));
      }
      await Promise.all(results);
      // A client that reads one chunk and leaves: the send fails as a premature close.
      await new Promise<void>((resolve) =>
        get(url, (res) => res.once('data', () => (res.destroy(), resolve()))),
      );
      await expect(results[3]).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
