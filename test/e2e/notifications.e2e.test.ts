// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, NotificationDelivery, ProjectTrigger } from '@stratum/contracts';
import {
  busyboxContext,
  pollBuild,
  RedisServerHandle,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
  writeTree,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';

jest.setTimeout(150_000);

const SERVICE_SECRET = 'service-notify-secret-0123';
const PROJECT_SECRET = 'project-notify-secret-4567';

interface Received {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly raw: string;
  readonly body: {
    id: string;
    type: string;
    build?: { id: string; state: string };
    events?: {
      action: string;
      target: { digest?: string; repository: string; tag?: string; mediaType?: string };
    }[];
  };
}

/** A notification receiver (outside the system): records what it is sent; can be taken down. */
class Receiver {
  readonly got: Received[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString();
        this.got.push({
          path: req.url ?? '',
          headers: req.headers,
          raw,
          body: JSON.parse(raw) as Received['body'],
        });
        res.writeHead(204).end();
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server?.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.sockets.forEach((s) => s.destroy());
    await new Promise((r) => this.server?.close(r));
  }

  /** Event types received at `path` for `buildId`, in order. */
  types(path: string, buildId: string): string[] {
    return this.got.filter((g) => g.path === path && g.body.build?.id === buildId).map((g) => g.body.type);
  }
}

let redisServer: RedisServerHandle;
let dataDir: string;
let repoDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle;
const receiver = new Receiver();

function git(args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd: repoDir,
    encoding: 'utf8',
  }).trim();
}

async function build(branch: string): Promise<BuildRecord> {
  const res = await request(api.url).post('/api/v1/projects/notes/builds').send({ branch });
  const t = res.body as ProjectTrigger;
  expect(`${res.status} ${t.error}`).toBe('202 null');
  return pollBuild(api.url, t.buildId as string, ['succeeded', 'failed', 'cancelled'], 90_000, 200);
}

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not within ${ms} ms; got ${JSON.stringify(receiver.got.map((g) => [g.path, g.body.type]))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function verifies(g: Received, secret: string): boolean {
  return (
    g.headers['x-stratum-signature'] === `sha256=${createHmac('sha256', secret).update(g.raw).digest('hex')}`
  );
}

beforeAll(async () => {
  await receiver.start();
  redisServer = await startRedisServer();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-e2e-notify-'));
  repoDir = writeTree(busyboxContext('RUN true\n'));
  git(['init', '-q', '-b', 'main']);
  git(['add', '-A']);
  git(['commit', '-q', '-m', 'works']);
  git(['checkout', '-q', '-b', 'broken']);
  writeTree({ Dockerfile: 'FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nRUN exit 3\n' }, repoDir);
  git(['commit', '-q', '-am', 'breaks']);
  const env = {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'e2e-notify',
    GIT_ALLOW_FILE_URLS: 'true',
    MAINTENANCE_SCHEDULE: 'off',
    AUTH_SECRET: 'y'.repeat(40),
    OUTGOING_BACKOFF_MS: '500',
    OUTGOING_ATTEMPTS: '30',
    OUTGOING_TIMEOUT_MS: '2000',
    NOTIFY_URLS: `http://127.0.0.1:${receiver.port}/service`,
    NOTIFY_SECRET: SERVICE_SECRET,
  };
  api = await startApiServer(testConfig(env));
  worker = await startWorkerProcess({ ...env, JOB_ATTEMPTS: '1', WORKER_SHUTDOWN_TIMEOUT_MS: '3000' });
  const created = await request(api.url)
    .post('/api/v1/projects')
    .send({
      name: 'notes',
      repoUrl: `file://${repoDir}`,
      branches: ['main', 'broken'],
      notifyUrl: `http://127.0.0.1:${receiver.port}/project`,
      notifySecret: PROJECT_SECRET,
    });
  expect(`${created.status} ${JSON.stringify(created.body)}`).toMatch(/^201 /);
  expect(JSON.stringify(created.body)).not.toContain(PROJECT_SECRET);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await redisServer?.stop();
  await receiver.stop().catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(repoDir, { recursive: true, force: true });
});

describe('notifications', () => {
  it('the service and the project endpoints get queued, started, succeeded in order, each signed with its key', async () => {
    const b = await build('main');
    expect(b.state).toBe('succeeded');
    const want = ['build.queued', 'build.started', 'build.succeeded'];
    await until(
      'all events',
      () => receiver.types('/service', b.id).length === 3 && receiver.types('/project', b.id).length === 3,
      30_000,
    );
    expect(receiver.types('/service', b.id)).toEqual(want);
    expect(receiver.types('/project', b.id)).toEqual(want);
    for (const g of receiver.got.filter((x) => x.body.build?.id === b.id)) {
      expect(verifies(g, g.path === '/service' ? SERVICE_SECRET : PROJECT_SECRET)).toBe(true);
      expect(verifies(g, g.path === '/service' ? PROJECT_SECRET : SERVICE_SECRET)).toBe(false);
      expect(g.headers['x-stratum-event']).toBe(g.body.type);
      expect(g.headers['x-stratum-delivery']).toBe(g.body.id);
    }
  });

  it('a receiver down for 20 s gets every event once it is back, in order, and the build never waited', async () => {
    const port = receiver.port;
    await receiver.stop();
    const t0 = Date.now();
    const b = await build('broken');
    const buildMs = Date.now() - t0;
    expect(b.state).toBe('failed');
    await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - t0))));
    expect(receiver.types('/service', b.id)).toEqual([]);
    await receiver.start(port);
    const want = ['build.queued', 'build.started', 'build.failed'];
    await until(
      'events after the outage',
      () => receiver.types('/service', b.id).length >= 3 && receiver.types('/project', b.id).length >= 3,
      60_000,
    );
    expect(receiver.types('/service', b.id)).toEqual(want);
    expect(receiver.types('/project', b.id)).toEqual(want);
    for (const g of receiver.got.filter((x) => x.body.build?.id === b.id)) {
      expect(verifies(g, g.path === '/service' ? SERVICE_SECRET : PROJECT_SECRET)).toBe(true);
    }
    // The build did not wait for the dead receiver (it took as long as a build takes).
    expect(buildMs).toBeLessThan(15_000);

    const history = (await request(api.url).get('/api/v1/notifications/deliveries?limit=1000').expect(200))
      .body as NotificationDelivery[];
    const ofBuild = history.filter((d) => d.type.startsWith('build.'));
    expect(ofBuild.some((d) => !d.ok && d.status === null && d.error !== null)).toBe(true);
    expect(ofBuild.filter((d) => d.ok).length).toBeGreaterThanOrEqual(12);
  });

  it('a manifest push and delete through /v2 reach the service receivers in Distribution’s envelope', async () => {
    const accept =
      'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
    const got = await request(api.url)
      .get('/v2/notes/manifests/main')
      .set('Accept', accept)
      .buffer(true)
      .parse((res, cb) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => cb(null, Buffer.concat(chunks)));
      });
    expect(got.status).toBe(200);
    const digest = got.headers['docker-content-digest'];
    const type = got.headers['content-type'].split(';')[0];
    await request(api.url)
      .put('/v2/notes/manifests/copy')
      .set('Content-Type', type)
      .send((got.body as Buffer).toString('utf8'))
      .expect(201);
    await request(api.url).delete('/v2/notes/manifests/copy').expect(202);
    const registry = (): Received[] =>
      receiver.got.filter((g) => g.path === '/service' && g.body.events !== undefined);
    const ofTag = (action: string, tag: string): Received | undefined =>
      registry().find((g) => g.body.events?.[0]?.action === action && g.body.events[0].target?.tag === tag);
    await until(
      'registry events',
      () => ofTag('push', 'copy') !== undefined && ofTag('delete', 'copy') !== undefined,
      30_000,
    );
    const push = ofTag('push', 'copy') as Received;
    const del = ofTag('delete', 'copy') as Received;
    expect(registry().indexOf(push)).toBeLessThan(registry().indexOf(del));
    // The build's own tag (written by the worker, not through /v2) is told the same way: every
    // tag write goes through the repository store, which writes the event.
    const own = ofTag('push', 'main');
    expect(own?.body.events?.[0]).toMatchObject({
      action: 'push',
      target: { digest, repository: 'notes', tag: 'main', mediaType: type },
    });
    expect(verifies(own as Received, SERVICE_SECRET)).toBe(true);
    expect(push.headers['content-type']).toBe('application/vnd.docker.distribution.events.v1+json');
    expect(verifies(push, SERVICE_SECRET)).toBe(true);
    expect(push.body.events?.[0]).toMatchObject({
      action: 'push',
      target: { digest, repository: 'notes', tag: 'copy', mediaType: type },
    });
    expect(del.body.events?.[0]).toMatchObject({
      action: 'delete',
      target: { digest, repository: 'notes', tag: 'copy' },
    });
    // Registry events are the service's: the project receiver gets none.
    expect(receiver.got.filter((g) => g.path === '/project' && g.body.events !== undefined)).toEqual([]);
  });
});
