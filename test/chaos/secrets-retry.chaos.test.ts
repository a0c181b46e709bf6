// A worker SIGKILLed in the middle of a RUN that uses a build secret and an ssh key: the build's
// secrets bundle outlives the lost attempt, the worker that takes the job over gets both (the
// step reads the secret and lists the key through its agent again), and the bundle is deleted
// once the build has ended for good; the killed worker's restart sweeps the secret's tmpfs and
// the agent's socket it left.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  busyboxContext,
  requireTools,
  sshToolsTar,
  WorkerProcessHandle,
  workerRunDir,
} from '@stratum/testing';
import { ApiServerHandle } from '../support/api-server';
import { entriesOf, ChaosStack, submitBuild, startChaosStack, waitForBuild } from './chaos-support';

jest.setTimeout(240_000);

const KILLED = 'chaos-secrets-a';
const SURVIVOR = 'chaos-secrets-b';
const TOKEN = 'retry-secret-VALUE-93c1f0ab77';

let stack: ChaosStack;
let dataDir: string;
let api: ApiServerHandle;
const startWorker = (workerId: string): Promise<WorkerProcessHandle> => stack.startWorker(workerId);

beforeAll(async () => {
  requireTools('ssh-keygen', 'runc');
  stack = await startChaosStack('chaos-secrets', SURVIVOR, {
    AUTH_SECRET: 'chaos-secrets-auth-secret-0123456789',
    // stalled-job detection in seconds rather than the production 30 s + 15 s
    WORKER_LOCK_DURATION_MS: '4000',
    WORKER_STALLED_INTERVAL_MS: '2000',
  });
  ({ dataDir, api } = stack);
});

afterAll(async () => {
  await stack?.close();
});

it('the attempt after a lost worker still has the build secret and the ssh key; they go when the build ends', async () => {
  const keyFile = join(dataDir, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
  const fingerprint = execFileSync('ssh-keygen', ['-lf', keyFile], { encoding: 'utf8' }).split(' ')[1];
  const bundle = await request(api.url)
    .post('/api/v1/builds/secrets')
    .send({
      secrets: { tok: Buffer.from(TOKEN).toString('base64') },
      ssh: { default: [readFileSync(keyFile).toString('base64')] },
    })
    .expect(201);
  const secretsId = (bundle.body as { secretsId: string }).secretsId;
  const files = busyboxContext(
    [
      'ADD ssh-tools.tar /',
      'ENV PATH=/usr/bin:/bin',
      "RUN --mount=type=secret,id=tok,required=true --mount=type=ssh,required=true sh -c 'sleep 3; ssh-add -l; echo len=$(wc -c < /run/secrets/tok)'",
    ].join('\n'),
    { 'ssh-tools.tar': sshToolsTar() },
  );

  const killed = await startWorker(KILLED);
  const res = await submitBuild(api.url, files, {
    t: 'chaos/secrets:1',
    nocache: 'true',
    secrets: secretsId,
  });
  expect(res.status).toBe(202);
  const id = (res.body as { id: string }).id;
  const survivor = await stack.killDuringRun(killed, KILLED, SURVIVOR);
  const redis = new Redis(stack.redisServer.url);
  try {
    // The lost attempt did not take the bundle with it.
    expect(await redis.exists(`stratum:build-secrets:${secretsId}`)).toBe(1);
    const rec: BuildRecord = await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], 120_000);
    expect(rec.error ?? null).toBeNull();
    expect(rec.state).toBe('succeeded');
    expect(rec.attempts).toBe(2);
    expect(survivor.output()).not.toMatch(/ERROR/);
    const logs = await request(api.url)
      .get(`/api/v1/builds/${id}/logs`)
      .buffer(true)
      .parse((r, cb) => {
        let text = '';
        r.on('data', (c: Buffer) => (text += c.toString('utf8')));
        r.on('end', () => cb(null, text));
      });
    const log = logs.body as string;
    // The second attempt's step listed the key and read the whole secret.
    expect(log).toContain(fingerprint);
    expect(log).toContain(`len=${TOKEN.length}`);
    expect(log).not.toContain(TOKEN);
    // Ended for good: the bundle is gone.
    expect(await redis.exists(`stratum:build-secrets:${secretsId}`)).toBe(0);
  } finally {
    redis.disconnect();
  }
  // The killed worker left its step behind (the secret's tmpfs, the agent's socket dir, the
  // overlay, the idmapped mounts; its bundle's sysfs in its tmpfs run dir); restarted with the
  // same id, its start-up sweep removes all of it.
  const scratch = join(dataDir, 'worker', KILLED);
  const places = [scratch, workerRunDir(scratch) ?? scratch];
  const mountsLeft = (): string[] =>
    execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' })
      .split('\n')
      .filter((t) => places.some((p) => t.startsWith(`${p}/`)));
  expect(mountsLeft().some((t) => /\/secrets-[0-9a-f]+$/.test(t))).toBe(true);
  // and, in its user namespace, the idmapped views of the secret and the socket, and its sandbox's sysfs
  expect(mountsLeft().filter((t) => /\/idmap\/[0-9a-f]+$/.test(t))).toHaveLength(2);
  expect(mountsLeft().some((t) => /\/bundles\/[^/]+\/sys$/.test(t))).toBe(true);
  const restarted = await startWorker(KILLED);
  expect(mountsLeft()).toEqual([]);
  expect(entriesOf(join(scratch, 'jobs'))).toEqual([]);
  expect(restarted.output()).toMatch(/swept what a previous worker left/);
});
