// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxRootfs, DockerdHandle, runCli, startDockerd } from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

// `stratum history` and `stratum diff` beside `docker history` and `docker diff` of the same
// image and the same change in Docker Engine (a private dockerd: vfs storage, no iptables or
// bridge, its own roots and socket), where their shapes overlap: the exact forms
// (`--no-trunc -H=false`) of the history, and the sorted A/C/D lines of the diff.

jest.setTimeout(240_000);

let stack: StackHandle;
let work: string;
let dockerd: DockerdHandle;
let docker: (...args: string[]) => Promise<string>;
let host: string;

async function stratum(args: string[]): Promise<string> {
  const r = await runCli(args, { url: stack.api.url, timeoutMs: 120_000, env: { HOME: work } });
  if (r.code !== 0) {
    throw new Error(`stratum ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
  }
  return r.stdout;
}

const CHANGE = 'mkdir /newdir && echo hi > /newdir/f && echo extra >> /etc/passwd && rm /bin/vi';

beforeAll(async () => {
  stack = await startStack({ name: 'cli-docker' });
  host = stack.api.url.replace('http://', '');
  work = mkdtempSync(join(tmpdir(), 'stratum-cli-docker-'));
  dockerd = await startDockerd(host, { TZ: 'UTC' });
  docker = dockerd.docker;
  writeFileSync(join(work, 'rootfs.tar'), busyboxRootfs());
  await stratum(['import', '-q', '-m', 'busybox', join(work, 'rootfs.tar'), 'cmp/base:1']);
}, 180_000);

afterAll(async () => {
  await dockerd?.stop();
  await stack?.stop();
  if (work !== undefined) {
    rmSync(work, { recursive: true, force: true });
  }
}, 60_000);

it('stratum diff lists what docker diff lists for the same change', async () => {
  const id = (await stratum(['run', '-d', 'cmp/base:1', 'sh', '-c', CHANGE])).trim();
  for (let i = 0; i < 120 && !/Exited/.test(await stratum(['ps', '-a'])); i++) {
    await new Promise((r) => setTimeout(r, 250));
  }
  const ours = (await stratum(['diff', id])).trim().split('\n').sort();

  await docker('pull', `${host}/cmp/base:1`);
  const cid = (await docker('create', '--network', 'none', `${host}/cmp/base:1`, 'sh', '-c', CHANGE)).trim();
  await docker('start', '-a', cid);
  const theirs = (await docker('diff', cid)).trim().split('\n').sort();
  expect(ours).toEqual(theirs);
  expect(ours).toContain('D /bin/vi');

  const committed = (await stratum(['commit', '-m', 'changed', id, 'cmp/changed:1'])).trim();
  expect(committed).toMatch(/^sha256:/);
});

it('stratum history --no-trunc -H=false prints what docker history does for the pulled image', async () => {
  await docker('pull', `${host}/cmp/changed:1`);
  const theirs = await docker('history', '--no-trunc', '-H=false', `${host}/cmp/changed:1`);
  const ours = await stratum(['history', '--no-trunc', '-H=false', 'cmp/changed:1']);
  expect(ours).toBe(theirs);
  expect(ours.trim().split('\n')).toHaveLength(3); // header, the commit, the import
  expect(ours).toMatch(/^sha256:[0-9a-f]{64} +\S+Z +sh -c mkdir .* \d+ +changed\n<missing> .* busybox\n$/m);
  // and the human form, but for the ages (seconds tick between the two commands)
  const age = / (Less than a second|\d+ seconds?|About a minute) ago /g;
  const theirsHuman = (await docker('history', `${host}/cmp/changed:1`)).replace(age, ' AGE ');
  const oursHuman = (await stratum(['history', 'cmp/changed:1'])).replace(age, ' AGE ');
  expect(oursHuman.split('\n').map((l) => l.replace(/\s+/g, ' '))).toEqual(
    theirsHuman.split('\n').map((l) => l.replace(/\s+/g, ' ')),
  );
});
