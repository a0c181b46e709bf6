import { createServer, Server, Socket } from 'node:net';
import { RegistryClient, RemoteRegistryError } from './registry-client';

// A registry (or mirror) that accepts connections and never answers: without a bound on the first
// request, Node's fetch waited minutes for headers and a FROM pull never reached the next mirror.
describe('RegistryClient against a server that never answers', () => {
  let server: Server;
  let host: string;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => server.close(r));
  });

  it('gives up on the ping after pingTimeoutMs with UNAVAILABLE, naming the wait', async () => {
    const client = new RegistryClient({ registry: host, insecure: true, pingTimeoutMs: 500 });
    const started = Date.now();
    const err = (await client
      .getManifest('library/x', 'latest')
      .catch((e: unknown) => e)) as RemoteRegistryError;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(RemoteRegistryError);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.transient).toBe(true);
    expect(err.message).toMatch(new RegExp(`http://${host}/v2/: no answer within 0.5 s`));
  });

  it('still ends at once on the caller abort, as the caller aborted', async () => {
    const client = new RegistryClient({ registry: host, insecure: true, pingTimeoutMs: 60_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const err = (await client
      .getManifest('library/x', 'latest', controller.signal)
      .catch((e: unknown) => e)) as Error;
    expect(controller.signal.aborted).toBe(true);
    expect(err).not.toBeInstanceOf(RemoteRegistryError);
  });
});
