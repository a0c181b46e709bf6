// What a RUN step can reach, through the API and a real worker: a Debian base installs a
// package from deb.debian.org over the default (sandboxed) network; with network=none the same
// step fails and says why.
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import request from 'supertest';
import { BuildEvent, BuildRecord } from '@stratum/contracts';
import { contextTar, debianBookwormTar, pollBuild, readSse, requireTools } from '@stratum/testing';
import { startStack, StackHandle } from '../support/stack';

jest.setTimeout(15 * 60_000);

let stack: StackHandle;

const APT_STEP =
  'RUN apt-get update && apt-get install -y --no-install-recommends python3 && python3 -c "print(\'python ok\')"';

async function build(
  dockerfile: string,
  query: Record<string, string> = {},
): Promise<{ rec: BuildRecord; log: string }> {
  const body = await contextTar({ Dockerfile: dockerfile });
  const res = await request(stack.api.url)
    .post('/api/v1/builds')
    .query({ t: 'net/test:1', ...query })
    .set('content-type', 'application/x-tar')
    .send(body)
    .expect(202);
  const id = (res.body as { id: string }).id;
  const rec = await pollBuild(stack.api.url, id, ['succeeded', 'failed', 'cancelled'], 10 * 60_000, 1000);
  const sse = await readSse(`${stack.api.url}/api/v1/builds/${id}/logs`, { timeoutMs: 30_000 });
  const log = sse.frames
    .map((f) => f.data as BuildEvent)
    .map((e) => (e.type === 'log' ? e.text : ''))
    .join('');
  return { rec, log };
}

beforeAll(async () => {
  requireTools('slirp4netns', 'iptables-restore', 'runc');
  const base = debianBookwormTar();
  stack = await startStack({ name: 'network' });
  const imported = await request(stack.api.url)
    .post('/api/v1/images/import?repository=debian&tag=bookworm')
    .set('content-type', 'application/x-tar')
    .send(readFileSync(base));
  expect([imported.status, imported.text.slice(0, 300)]).toEqual([201, expect.any(String)]);
}, 15 * 60_000);

afterAll(async () => {
  await stack?.stop();
});

it('apt-get installs python3 from deb.debian.org on the default network', async () => {
  const { rec, log } = await build(`FROM debian:bookworm\n${APT_STEP}\n`);
  expect([rec.state, rec.error]).toEqual(['succeeded', null]);
  expect(log).toMatch(/Get:\d+ http:\/\/deb\.debian\.org\/debian bookworm/);
  expect(log).toContain('python ok');
});

it("the same step with network=none fails with the command's error and says the step had no network", async () => {
  const { rec, log } = await build(`FROM debian:bookworm\n${APT_STEP}\n`, { network: 'none' });
  expect(rec.state).toBe('failed');
  expect(rec.error).toMatch(/Dockerfile:2/);
  expect(rec.error).toMatch(/network=none/);
  expect(log).toMatch(/Temporary failure resolving 'deb\.debian\.org'|Could not resolve/);
});

it('RUN --network=none in the Dockerfile wins over the default, and a bad network is a 400', async () => {
  const { rec } = await build(
    'FROM debian:bookworm\nRUN --network=none sh -c "ls /sys/class/net > /ifaces"\nRUN test "$(cat /ifaces)" = lo\n',
  );
  expect([rec.state, rec.error]).toEqual(['succeeded', null]);
  const bad = await request(stack.api.url)
    .post('/api/v1/builds')
    .query({ network: 'bridge' })
    .set('content-type', 'application/x-tar')
    .send(await contextTar({ Dockerfile: 'FROM debian:bookworm\n' }));
  expect(bad.status).toBe(400);
  expect(JSON.stringify(bad.body)).toMatch(/sandbox, none or default/);
});

it("a build's RUN steps take turns on one sandbox network, which still reaches out in the later step", async () => {
  const { rec, log } = await build(
    [
      'FROM debian:bookworm',
      'RUN readlink /proc/self/ns/net > /ns1',
      'RUN readlink /proc/self/ns/net > /ns2 && echo "ns1=$(cat /ns1) ns2=$(cat /ns2)" && getent hosts deb.debian.org',
      '',
    ].join('\n'),
    { t: 'net/shared:1' },
  );
  expect([rec.state, rec.error]).toEqual(['succeeded', null]);
  const [, ns1, ns2] = /ns1=(net:\[\d+\]) ns2=(net:\[\d+\])/.exec(log) ?? [];
  expect(ns1).toBeDefined();
  expect(ns2).toBe(ns1);
  // getent's answer: an address, then the name
  expect(log).toMatch(/^[0-9a-f.:]+\s+deb\.debian\.org/m);
});
