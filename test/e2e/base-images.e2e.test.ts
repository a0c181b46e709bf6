// Base images as Docker users expect (issue 14 item 2): an unqualified FROM is looked up in our
// registry first, then pulled from the default registry (docker.io, `library/` added to one-word
// names) through its mirrors in order, then the registry itself (PULL_MIRRORS, as daemon.json's
// registry-mirrors); a qualified one goes to its registry through its mirrors. Two real CNCF
// Distribution registries play "the mirror of docker.io" and "another registry"; a server that
// answers 503 to everything plays a mirror that is down. The build log says where each base came from;
// a base nothing has fails naming every place tried; a pulled base is kept and found again
// without asking the mirror.
import 'reflect-metadata';
import { createServer, Server, Socket } from 'node:net';
import request from 'supertest';
import { BuildEvent, BuildRecord } from '@stratum/contracts';
import { busyboxRootfs, contextTar, pollBuild, readSse } from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';
import { DistributionHandle, skopeo, startDistribution } from './registry-fixtures';

jest.setTimeout(120_000);

let stack: StackHandle;
let mirror: DistributionHandle;
let other: DistributionHandle;
let deadMirror: string;
let deadServer: Server;
const deadSockets = new Set<Socket>();
let ours: string;

const DOCKERFILE = 'FROM busybox\nRUN echo hi > /hi\nCMD ["cat","/hi"]\n';

/** Copies an image of ours to another registry (skopeo, plain HTTP both ways). */
async function copyOut(from: string, to: string): Promise<void> {
  await skopeo(
    'copy',
    '--src-tls-verify=false',
    '--dest-tls-verify=false',
    `docker://${ours}/${from}`,
    `docker://${to}`,
  );
}

/** Builds `dockerfile` and waits for the end; returns the record and the build's system log. */
async function build(dockerfile: string, tag: string): Promise<{ record: BuildRecord; log: string }> {
  const res = await request(stack.api.url)
    .post('/api/v1/builds')
    .query({ t: tag })
    .set('content-type', 'application/x-tar')
    .send(await contextTar({ Dockerfile: dockerfile }));
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  const record = await pollBuild(stack.api.url, id, ['succeeded', 'failed'], 90_000);
  const sse = await readSse(`${stack.api.url}/api/v1/builds/${id}/logs`, { timeoutMs: 10_000 });
  const log = sse.frames
    .map((f) => f.data as BuildEvent)
    .flatMap((e) => (e.type === 'log' && e.step === null ? [e.text] : []))
    .join('');
  return { record, log };
}

beforeAll(async () => {
  mirror = await startDistribution();
  other = await startDistribution();
  // A mirror that is down: it holds its port (a port merely free now could be taken by another
  // process on this shared machine) and answers every connection 503.
  deadServer = createServer((socket) => {
    deadSockets.add(socket);
    socket.on('close', () => deadSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  await new Promise<void>((r) => deadServer.listen(0, '127.0.0.1', r));
  deadMirror = `127.0.0.1:${(deadServer.address() as { port: number }).port}`;
  stack = await startStack({
    name: 'base-images',
    env: {
      DEFAULT_REGISTRY: 'docker.io',
      PULL_MIRRORS: `docker.io=http://${deadMirror},http://${mirror.host},${other.host}=http://${deadMirror}`,
      // The pull-through mirror we serve, of the same Distribution: /v2/hub/<name> is its <name>.
      REGISTRY_MIRRORS: `hub=http://${mirror.host}`,
    },
  });
  ours = stack.api.url.replace('http://', '');
  // Our busybox, as `infra/up.sh` makes it (docker import of Debian's busybox-static).
  await request(stack.api.url)
    .post('/api/v1/images/import')
    .query({ repository: 'busybox', tag: 'latest' })
    .set('content-type', 'application/x-tar')
    .send(busyboxRootfs())
    .expect(201);
  // The mirror's own busybox carries a mark, so a build that took it instead of ours would show.
  const marked = await build('FROM busybox\nRUN touch /from-mirror\n', 'seed/marked:1');
  expect(marked.record.state).toBe('succeeded');
  await copyOut('seed/marked:1', `${mirror.host}/library/busybox:latest`);
  await copyOut('busybox:latest', `${mirror.host}/library/mirrored:latest`);
  await copyOut('busybox:latest', `${other.host}/team/base:1`);
});

afterAll(async () => {
  try {
    await stack?.stop();
  } finally {
    await mirror?.stop();
    await other?.stop();
    if (deadServer !== undefined) {
      deadSockets.forEach((socket) => socket.destroy());
      await new Promise((r) => deadServer.close(r));
    }
  }
});

it('finds an unqualified name in our registry first (the three-line quick start build)', async () => {
  const { record, log } = await build(`${DOCKERFILE}RUN test ! -e /from-mirror\n`, 'hello/world:1');
  expect(record.error).toBeNull();
  expect(record.state).toBe('succeeded');
  expect(log).toContain('FROM busybox: found in this registry\n');
  expect(log).not.toMatch(/resolved from|trying the next/);
});

it('pulls a one-word name as docker.io/library/<name> through the mirrors in order, saying from where', async () => {
  const { record, log } = await build('FROM mirrored\nRUN echo ok > /ok\n', 'hello/mirrored:1');
  expect(record.error).toBeNull();
  expect(record.state).toBe('succeeded');
  // The first mirror is down: passed over, said so, then the second one had it.
  expect(log).toMatch(
    new RegExp(`FROM mirrored: mirror http://${deadMirror} failed \\(.*answered 503\\); trying the next\\n`),
  );
  expect(log).toContain(
    `FROM mirrored: resolved from mirror http://${mirror.host} (docker.io/library/mirrored:latest)\n`,
  );
  // Kept as a pull leaves it (`docker images` shows pulled images): a repository of ours.
  const images = (await request(stack.api.url).get('/api/v1/images').expect(200)).body as {
    repository: string;
    tag: string;
  }[];
  expect(images).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ repository: 'remote/docker.io/library/mirrored', tag: 'latest' }),
    ]),
  );
});

it('goes to the registry itself when its mirror is down (a fully qualified name)', async () => {
  const { record, log } = await build(`FROM ${other.host}/team/base:1\nRUN echo ok > /ok\n`, 'hello/other:1');
  expect(record.error).toBeNull();
  expect(record.state).toBe('succeeded');
  expect(log).toMatch(
    new RegExp(
      `FROM ${other.host}/team/base:1: mirror http://${deadMirror} failed \\(.*\\); trying the next\\n`,
    ),
  );
  expect(log).toContain(
    `FROM ${other.host}/team/base:1: resolved from registry http://${other.host} (${other.host}/team/base:1)\n`,
  );
});

it('fails a base nothing has, naming every place tried and why', async () => {
  const { record } = await build('FROM stratum-e2e-nowhere:1\nRUN true\n', 'hello/nowhere:1');
  expect(record.state).toBe('failed');
  const error = record.error ?? '';
  expect(error).toContain(
    'base image "stratum-e2e-nowhere:1" (docker.io/library/stratum-e2e-nowhere:1) not found',
  );
  expect(error).toMatch(/this registry: image "stratum-e2e-nowhere:1" not found/);
  expect(error).toMatch(new RegExp(`mirror http://${deadMirror}: .*answered 503`));
  expect(error).toMatch(new RegExp(`mirror http://${mirror.host}: .*404`));
  // Offline here (no DNS for it); with internet, Docker Hub refuses the unknown name instead.
  expect(error).toContain('registry https://registry-1.docker.io: ');
});

it('takes FROM <pull-through prefix>/<name> through that mirror, blobs and all', async () => {
  // A client asked /v2/hub/… for the manifest only: the pull-through holds it, tagged, without
  // its config and layers (they are fetched when a client asks for them).
  const head = await request(stack.api.url).get('/v2/hub/library/mirrored/manifests/latest').expect(200);
  const tagged = head.headers['docker-content-digest'];
  const { record, log } = await build('FROM hub/library/mirrored\nRUN echo ok > /ok\n', 'hello/hub:1');
  expect(record.error).toBeNull();
  expect(record.state).toBe('succeeded');
  expect(log).toContain(
    `FROM hub/library/mirrored: resolved from registry http://${mirror.host} (${mirror.host}/library/mirrored:latest)\n`,
  );
  // The mirror's tag still names what upstream's does.
  const after = await request(stack.api.url).head('/v2/hub/library/mirrored/manifests/latest').expect(200);
  expect(after.headers['docker-content-digest']).toBe(tagged);
});

it('builds from the pulled base again without contacting the mirror', async () => {
  await mirror.stop();
  const { record, log } = await build('FROM mirrored\nRUN echo again > /again\n', 'hello/mirrored:2');
  expect(record.error).toBeNull();
  expect(record.state).toBe('succeeded');
  expect(log).toContain(
    'FROM mirrored: found in this registry as remote/docker.io/library/mirrored (pulled before: docker.io/library/mirrored:latest)\n',
  );
  expect(log).not.toMatch(/trying the next|resolved from/);
  const again = await build('FROM hub/library/mirrored\nRUN echo again > /again\n', 'hello/hub:2');
  expect(again.record.error).toBeNull();
  expect(again.log).toContain('FROM hub/library/mirrored: found in this registry as hub/library/mirrored');
});
