import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildEvent } from '@stratum/contracts';
import { ApiClient, parseSse } from './api-client';

function streamOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) {
        controller.enqueue(typeof c === 'string' ? enc.encode(c) : c);
      }
      controller.close();
    },
  });
}

async function collect(chunks: (string | Uint8Array)[]): Promise<BuildEvent[]> {
  const out: BuildEvent[] = [];
  for await (const e of parseSse(streamOf(chunks))) {
    out.push(e);
  }
  return out;
}

const queued: BuildEvent = { type: 'state', state: 'queued', at: '2024-01-01T00:00:00.000Z' };
const log: BuildEvent = { type: 'log', step: 0, stream: 'stdout', text: 'hello\n' };

describe('parseSse', () => {
  it('parses id/event/data frames into the data JSON, in order', async () => {
    const text =
      `id: 1-0\nevent: state\ndata: ${JSON.stringify(queued)}\n\n` +
      `id: 2-0\nevent: log\ndata: ${JSON.stringify(log)}\n\n`;
    expect(await collect([text])).toEqual([queued, log]);
  });

  it('reassembles frames split across chunks at any byte', async () => {
    const text = `id: 1-0\nevent: log\ndata: ${JSON.stringify(log)}\n\nid: 2-0\nevent: state\ndata: ${JSON.stringify(queued)}\n\n`;
    const bytes = new TextEncoder().encode(text);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 3) {
      chunks.push(bytes.slice(i, i + 3));
    }
    expect(await collect(chunks)).toEqual([log, queued]);
  });

  it('keeps multi-byte UTF-8 characters split between chunks intact', async () => {
    const e: BuildEvent = { type: 'log', step: null, stream: 'system', text: 'größe ✓ 🚀\n' };
    const bytes = new TextEncoder().encode(`data: ${JSON.stringify(e)}\n\n`);
    const idx = bytes.indexOf(0xf0); // first byte of the emoji
    expect(await collect([bytes.slice(0, idx + 1), bytes.slice(idx + 1)])).toEqual([e]);
  });

  it('skips comments (heartbeats) and frames without data', async () => {
    const text = `: keep-alive\n\nevent: ping\n\ndata: ${JSON.stringify(queued)}\n\n: keep-alive\n\n`;
    expect(await collect([text])).toEqual([queued]);
  });

  it('joins multi-line data with newlines', async () => {
    const text = `data: {"type":"error",\ndata: "message":"boom"}\n\n`;
    expect(await collect([text])).toEqual([{ type: 'error', message: 'boom' }]);
  });

  it('accepts `data:` without a space', async () => {
    expect(await collect([`data:${JSON.stringify(queued)}\n\n`])).toEqual([queued]);
  });

  it('accepts CRLF line endings (allowed by the SSE spec)', async () => {
    const text = `id: 1-0\r\nevent: state\r\ndata: ${JSON.stringify(queued)}\r\n\r\n`;
    expect(await collect([text])).toEqual([queued]);
  });

  it('yields nothing for an empty stream', async () => {
    expect(await collect([])).toEqual([]);
  });
});

describe('ApiClient over https', () => {
  let dir: string;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stratum-cli-tls-'));
    // A CA Node does not know, and a server certificate for 127.0.0.1 signed by it.
    const ssl = (...args: string[]): void =>
      void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '1',
      '-subj',
      '/CN=stratum test CA',
    );
    ssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'srv.key',
      '-out',
      'srv.csr',
      '-subj',
      '/CN=127.0.0.1',
    );
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    ssl(
      'x509',
      '-req',
      '-in',
      'srv.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'srv.pem',
      '-days',
      '1',
      '-extfile',
      'ext.cnf',
    );
    server = createServer(
      { key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) },
      (req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ items: [], total: 0, url: req.url }));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const client = (extraCaFile: string | null): ApiClient =>
    new ApiClient({ serverUrl: url, token: null, cacheDir: null, extraCaFile, configDir: null });

  it('trusts the CAs of STRATUM_EXTRA_CA_CERTS beside Node’s own', async () => {
    await expect(client(join(dir, 'ca.pem')).listBuilds(0, 5)).resolves.toMatchObject({ total: 0 });
  });

  it('refuses a server whose CA it was not given', async () => {
    await expect(client(null).listBuilds(0, 5)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('warns about a CA file it cannot read and goes on with Node’s roots, as Node does', async () => {
    const warnings: string[] = [];
    const spy = jest
      .spyOn(process.stderr, 'write')
      .mockImplementation((s) => (warnings.push(String(s)), true));
    try {
      await expect(client(join(dir, 'missing.pem')).listBuilds(0, 5)).rejects.toMatchObject({
        code: 'UNAVAILABLE', // the test CA is not among Node's roots
      });
    } finally {
      spy.mockRestore();
    }
    expect(warnings.join('')).toMatch(/ignoring extra certs from `.*missing\.pem`/);
  });
});
