// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated
// class (main.ts does the same).
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { busyboxContext, contextTar, pollBuild } from '@stratum/testing';
import { startApiServer, testConfig } from '../support/api-server';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(60_000);

let stack: StackHandle;

/** `name{labels}` -> value, from the text exposition format. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await request(url).get('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of res.text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function build(files: Record<string, string | Buffer>, tag: string): Promise<BuildRecord> {
  const res = await request(stack.api.url)
    .post('/api/v1/builds')
    .query({ t: tag })
    .set('content-type', 'application/x-tar')
    .send(await contextTar(files));
  expect(res.status).toBe(202);
  return pollBuild(stack.api.url, res.body.id as string, ['succeeded', 'failed', 'cancelled'], 30_000);
}

beforeAll(async () => {
  stack = await startStack({
    name: 'metrics',
    env: { WORKER_CONCURRENCY: '2', WORKER_SHUTDOWN_TIMEOUT_MS: '3000' },
  });
});

afterAll(async () => {
  await stack?.stop();
});

describe('/metrics', () => {
  let first: BuildRecord;
  let second: BuildRecord;

  it('starts with every series at zero', async () => {
    const m = await scrape(stack.api.url);
    expect(m.get('stratum_builds{state="succeeded"}')).toBe(0);
    expect(m.get('stratum_builds_finished_total{state="succeeded"}')).toBe(0);
    expect(m.get('stratum_build_steps_total{status="cached"}')).toBe(0);
    expect(m.get('stratum_build_cache_hit_ratio')).toBeNaN();
    expect(m.get('stratum_registry_blob_pulled_bytes_total')).toBe(0);
    expect(m.get('stratum_registry_blob_pushed_bytes_total')).toBe(0);
    expect(m.get('stratum_workers_online')).toBe(1);
    expect(m.get('stratum_queue_workers{queue="build"}')).toBe(1);
    expect(m.get(`stratum_queue_workers{queue="commit.${stack.env.WORKER_ID}"}`)).toBe(1);
    expect(m.get('stratum_metrics_source_up{source="builds"}')).toBe(1);
    expect(m.get('stratum_metrics_source_up{source="queues"}')).toBe(1);
    expect(m.has('process_cpu_user_seconds_total')).toBe(true);
  });

  it('counts builds, steps, step durations and cache hits once each', async () => {
    const files = busyboxContext('RUN echo metrics > /m.txt\n');
    first = await build(files, 'metrics/one:1');
    second = await build(files, 'metrics/one:2');
    expect([first.state, second.state]).toEqual(['succeeded', 'succeeded']);
    const done = first.steps.filter((s) => s.status === 'done').length;
    const cached = second.steps.filter((s) => s.status === 'cached').length;
    expect(done).toBe(first.steps.length);
    expect(cached).toBe(second.steps.length);

    const m = await scrape(stack.api.url);
    expect(m.get('stratum_builds{state="succeeded"}')).toBe(2);
    expect(m.get('stratum_builds{state="running"}')).toBe(0);
    expect(m.get('stratum_builds_finished_total{state="succeeded"}')).toBe(2);
    expect(m.get('stratum_build_steps_total{status="done"}')).toBe(done);
    expect(m.get('stratum_build_steps_total{status="cached"}')).toBe(cached);
    expect(m.get('stratum_build_step_duration_seconds_count{status="done"}')).toBe(done);
    expect(m.get('stratum_build_step_duration_seconds_count{status="cached"}')).toBe(cached);
    const seconds = first.steps.reduce((a, s) => a + (s.durationMs ?? 0), 0) / 1000;
    expect(m.get('stratum_build_step_duration_seconds_sum{status="done"}')).toBeCloseTo(seconds, 3);
    expect(m.get('stratum_build_step_duration_seconds_bucket{le="+Inf",status="done"}')).toBe(done);
    expect(m.get('stratum_build_cache_hit_ratio')).toBeCloseTo(cached / (cached + done), 6);
    expect(m.get('stratum_queue_jobs{queue="build",state="completed"}')).toBe(2);
    expect(m.get('stratum_queue_jobs{queue="build",state="waiting"}')).toBe(0);
    expect(m.get('stratum_queue_jobs{queue="build",state="failed"}')).toBe(0);

    // scraped again, nothing is counted twice
    const again = await scrape(stack.api.url);
    expect(again.get('stratum_builds_finished_total{state="succeeded"}')).toBe(2);
    expect(again.get('stratum_build_steps_total{status="done"}')).toBe(done);
  });

  it('another API replica on the same Redis does not count the same builds again', async () => {
    const replica = await startApiServer(testConfig(stack.env));
    try {
      const m = await scrape(replica.url);
      expect(m.get('stratum_builds{state="succeeded"}')).toBe(2); // gauges: cluster-wide
      expect(m.get('stratum_builds_finished_total{state="succeeded"}')).toBe(0); // counted by the first
      expect(m.get('stratum_build_steps_total{status="done"}')).toBe(0);
    } finally {
      await replica.close();
    }
  });

  it('counts blob bytes pulled from and pushed to the registry, and /v2 still works', async () => {
    // pull: the built image's layers, one whole and one ranged
    const manifest = await request(stack.api.url)
      .get('/v2/metrics/one/manifests/1')
      .set('accept', 'application/vnd.oci.image.manifest.v1+json');
    expect(manifest.status).toBe(200);
    const layers = (JSON.parse(manifest.text) as { layers: { digest: string; size: number }[] }).layers;
    const layer = layers[layers.length - 1];
    const whole = await request(stack.api.url).get(`/v2/metrics/one/blobs/${layer.digest}`).buffer(true);
    expect(whole.status).toBe(200);
    const ranged = await request(stack.api.url)
      .get(`/v2/metrics/one/blobs/${layer.digest}`)
      .set('range', 'bytes=0-9');
    expect(ranged.status).toBe(206);
    await request(stack.api.url).head(`/v2/metrics/one/blobs/${layer.digest}`).expect(200); // no body: not counted

    // push: one monolithic upload and one chunked (POST, PATCH, PATCH, PUT with a last chunk)
    const a = Buffer.alloc(300_000, 7);
    const digestA = `sha256:${createHash('sha256').update(a).digest('hex')}`;
    await request(stack.api.url)
      .post(`/v2/metrics/pushed/blobs/uploads/?digest=${digestA}`)
      .set('content-type', 'application/octet-stream')
      .send(a)
      .expect(201);
    const b = Buffer.alloc(200_000, 9);
    const digestB = `sha256:${createHash('sha256').update(b).digest('hex')}`;
    const start = await request(stack.api.url).post('/v2/metrics/pushed/blobs/uploads/').expect(202);
    let location = start.headers.location;
    for (const [from, to] of [
      [0, 100_000],
      [100_000, 150_000],
    ]) {
      const patch = await request(stack.api.url)
        .patch(location)
        .set('content-type', 'application/octet-stream')
        .set('content-range', `${from}-${to - 1}`)
        .send(b.subarray(from, to))
        .expect(202);
      location = patch.headers.location;
    }
    await request(stack.api.url)
      .put(`${location}${location.includes('?') ? '&' : '?'}digest=${digestB}`)
      .set('content-type', 'application/octet-stream')
      .send(b.subarray(150_000))
      .expect(201);
    // the bytes arrived whole (the counting did not take any from the upload)
    const back = await request(stack.api.url).get(`/v2/metrics/pushed/blobs/${digestB}`).buffer(true);
    expect(
      createHash('sha256')
        .update(back.body as Buffer)
        .digest('hex'),
    ).toBe(digestB.slice(7));

    // a malformed path still gets the registry's own OCI error from the controller
    const bad = await request(stack.api.url).get('/v2/Bad/Name/blobs/sha256:short').expect(400);
    expect(bad.body).toMatchObject({ errors: [{ code: 'NAME_INVALID' }] });

    // A pull is counted when the server's response 'finish'es, which can come just after the
    // client has read the last byte: scrape until the counts settle (at most 5 s).
    const pulled = layer.size + 10 + b.length;
    let m = await scrape(stack.api.url);
    for (let i = 0; i < 50 && m.get('stratum_registry_blob_pulled_bytes_total') !== pulled; i++) {
      await new Promise((r) => setTimeout(r, 100));
      m = await scrape(stack.api.url);
    }
    expect(m.get('stratum_registry_blob_pulled_bytes_total')).toBe(pulled);
    expect(m.get('stratum_registry_blob_pushed_bytes_total')).toBe(a.length + b.length);
  });
});
