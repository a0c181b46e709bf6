import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo, Socket } from 'node:net';

/** One request the fake forge received. */
export interface Recorded {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Record<string, unknown>;
  /** What the fake answered. */
  readonly status: number;
}

/**
 * A stand-in for GitHub, GitLab and Gitea's status APIs (the forge is outside the system): it
 * records each request and answers as the docs say (201 with the status), or 500 while told to
 * fail. The tests check the documented request shapes against what it recorded; it also stands in
 * for a notification receiver (it answers any POST).
 */
export class FakeForge {
  readonly requests: Recorded[] = [];
  failNext = 0;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server?.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Down: the port refuses connections until {@link start} again. */
  async stop(): Promise<void> {
    this.sockets.forEach((s) => s.destroy());
    await new Promise((r) => this.server?.close(r));
    this.server = null;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) {
      chunks.push(c as Buffer);
    }
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>;
    const status = this.failNext > 0 ? 500 : 201;
    if (this.failNext > 0) {
      this.failNext--;
    }
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, status });
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(status === 201 ? { id: this.requests.length, ...body } : { message: 'boom' }));
  }

  /** States delivered (answered 201) for `path`, in order. */
  delivered(path: string, field = 'state'): unknown[] {
    return this.requests.filter((r) => r.path === path && r.status === 201).map((r) => r.body[field]);
  }
}
