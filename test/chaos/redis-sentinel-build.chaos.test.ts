// Redis high availability with real builds (issue 20, item 5): the API and a worker process
// reach Redis through three sentinels; the primary is SIGKILLed while a build's RUN step runs
// and more builds wait in the queue. The sentinels promote the replica, API and worker follow
// it, and every build the API acknowledged (202), before the kill or during the failover,
// ends `succeeded` with one result, its steps run by the worker.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  busyboxContext,
  SentinelRedis,
  startSentinelRedis,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { overlayMountsUnder, pollFor, runcContainers, submitBuild, waitForBuild } from './chaos-support';

jest.setTimeout(300_000);

const WORKER = 'chaos-sentinel';

let ha: SentinelRedis;
let dataDir: string;
let api: ApiServerHandle | undefined;
let worker: WorkerProcessHandle | undefined;

beforeAll(async () => {
  ha = await startSentinelRedis('stratum-chaos');
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-sentinel-'));
});

afterAll(async () => {
  await worker?.stop(15_000);
  await api?.close();
  await ha?.close();
  if (overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

const query = (t: string): Record<string, string> => ({
  t,
  buildargs: JSON.stringify({ SOURCE_DATE_EPOCH: '0' }),
  nocache: 'true',
});

it('the Redis primary SIGKILLed mid-build: the replica is promoted and every acknowledged build completes once', async () => {
  const env = {
    ...ha.env,
    DATA_DIR: dataDir,
    WORKER_ID: WORKER,
    WORKER_CONCURRENCY: '2',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    JOB_ATTEMPTS: '3',
  };
  api = await startApiServer(testConfig(env));
  worker = await startWorkerProcess(env, 60_000);

  const acknowledged: string[] = [];
  const submit = async (name: string, body: string): Promise<number> => {
    const res = await submitBuild(api!.url, busyboxContext(body), query(`sentinel/${name}:1`));
    if (res.status === 202) {
      acknowledged.push((res.body as { id: string }).id);
    }
    return res.status;
  };
  // One build in its RUN step when the primary dies, more waiting behind it.
  expect(await submit('running', 'RUN sleep 4 && echo running > /r\n')).toBe(202);
  for (let i = 0; i < 4; i++) {
    expect(await submit(`queued-${i}`, `RUN sleep 1 && echo ${i} > /q\n`)).toBe(202);
  }
  await pollFor(
    'the RUN container of the first build',
    () => (runcContainers(join(dataDir, 'worker', WORKER, 'runc')).length > 0 ? true : undefined),
    60_000,
    100,
  );
  // Acknowledged and on the replica before the kill (replication is asynchronous: what the
  // replica has not received dies with the primary, Sentinel or not).
  const primary = await ha.connect(ha.primaryPort);
  expect(Number(await primary.call('WAIT', '1', '5000'))).toBe(1);
  primary.disconnect();

  const killedAt = Date.now();
  await ha.killPrimary();
  // Builds submitted during the failover: each either acknowledged (and then it must complete)
  // or refused with an error status, never accepted and lost.
  const during: number[] = [];
  for (let i = 0; i < 3; i++) {
    during.push(await submit(`during-${i}`, `RUN echo during ${i} > /d\n`));
  }
  const promotedMs = await ha.promoted(killedAt);
  expect(await submit('after', 'RUN echo after > /a\n')).toBe(202);
  const afterMs = Date.now() - killedAt;

  const finals: BuildRecord[] = [];
  for (const id of acknowledged) {
    finals.push(await waitForBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], 180_000));
  }
  for (const rec of finals) {
    expect({ id: rec.id, state: rec.state, error: rec.error ?? null }).toEqual({
      id: rec.id,
      state: 'succeeded',
      error: null,
    });
    // Once: one result event in the build's stream, one attempt record per attempt.
    const log = await request(api.url).get(`/api/v1/builds/${rec.id}/logs`).buffer(true);
    expect({ id: rec.id, results: (String(log.text).match(/^event: result$/gm) ?? []).length }).toEqual({
      id: rec.id,
      results: 1,
    });
    expect(rec.attemptHistory?.length).toBe(rec.attempts);
  }
  process.stdout.write(
    `chaos redis-sentinel-build: primary SIGKILLed during a RUN step; replica promoted after ${promotedMs} ms; ` +
      `builds during the failover answered ${during.join(',')}; a build after it acknowledged ${afterMs} ms after the kill; ` +
      `${finals.length} acknowledged builds, all succeeded once (attempts ${finals.map((r) => r.attempts).join(',')})\n`,
  );
});
