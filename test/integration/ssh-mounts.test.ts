// RUN --mount=type=ssh against real runc, overlayfs and a real redis-server: the step's ssh
// client finds the worker's agent at SSH_AUTH_SOCK, lists the build's key and signs with it
// (the signature, made in the container, verifies on the host against the public key); the
// socket, its mountpoint and the key reach no layer, the config or a cache key; a missing
// required id fails naming it and the line; nothing stays mounted or listening.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildEngine, isUserBuildError } from '@stratum/engine';
import { Digest } from '@stratum/contracts';
import { applyLayer } from '@stratum/layers';
import { BlobDigest, FsBlobStore } from '@stratum/storage';
import {
  buildWithEngine,
  busyboxContext,
  EngineBuildResult,
  EngineTestBed,
  requireTools,
  sshToolsTar,
  startEngineTestBed,
  unpackImage,
} from '@stratum/testing';

jest.setTimeout(120_000);

let bed: EngineTestBed;
let work: string;
let blobs: FsBlobStore;
let engine: BuildEngine;
let tools: Buffer;
const keys: Record<string, { priv: string; pub: string }> = {};
let seq = 0;

const build = (dockerfile: string, ssh: Record<string, string[]> | undefined): Promise<EngineBuildResult> =>
  buildWithEngine(
    engine,
    blobs,
    busyboxContext(`ADD ssh-tools.tar /\nENV PATH=/usr/bin:/bin\n${dockerfile}`, { 'ssh-tools.tar': tools }),
    {
      secrets: {},
      ...(ssh !== undefined ? { ssh } : {}),
      tags: [`it/ssh:${++seq}`],
    },
  );

const unpack = (digest: Digest): Promise<string> => unpackImage(engine, blobs, digest, work);

const mountsUnderWork = (): string[] => bed.mounts();

beforeAll(async () => {
  requireTools('runc', 'findmnt', 'ssh-keygen', 'ssh-add', 'grep');
  bed = await startEngineTestBed('ssh-it');
  ({ work, blobs } = bed);
  engine = bed.engine();
  for (const [name, args] of [
    ['ed', ['-t', 'ed25519']],
    ['rsa', ['-t', 'rsa', '-b', '2048']],
    ['ec', ['-t', 'ecdsa', '-b', '256']],
  ] as const) {
    const f = join(work, name);
    execFileSync('ssh-keygen', ['-q', ...args, '-N', '', '-C', `${name}@test`, '-f', f]);
    keys[name] = { priv: readFileSync(f, 'utf8'), pub: readFileSync(`${f}.pub`, 'utf8').trim() };
  }
  tools = sshToolsTar();
});

afterEach(async () => {
  expect(mountsUnderWork()).toEqual([]);
  // No agent socket left in a build's scratch dir or the temporary one.
  const left = (await readdir(tmpdir())).filter((n) => n.startsWith('stratum-ssh-'));
  expect(left.filter((n) => !n.startsWith('stratum-ssh-tools-') && !n.startsWith('stratum-ssh-it-'))).toEqual(
    [],
  );
});

afterAll(async () => {
  await bed?.stop();
});

/** `ssh-keygen -Y verify` on the host: true when `sig` is `pub`'s signature of `msg`. */
function verifies(pub: string, msg: Buffer, sig: string): Promise<boolean> {
  const allowed = join(work, `allowed-${++seq}`);
  const sigFile = join(work, `sig-${seq}`);
  writeFileSync(allowed, `signer ${pub}\n`);
  writeFileSync(sigFile, sig);
  return new Promise((resolve) => {
    const c = execFile(
      'ssh-keygen',
      ['-Y', 'verify', '-f', allowed, '-I', 'signer', '-n', 'file', '-s', sigFile],
      (err) => resolve(err === null),
    );
    c.stdin?.end(msg);
  });
}

it('the step lists the key at SSH_AUTH_SOCK (default target) and signs with it: the host verifies the signature', async () => {
  const r = await build(
    [
      'RUN --mount=type=ssh,required=true sh -c \'echo "$SSH_AUTH_SOCK" > /sock; ssh-add -L > /listed; ssh-add -L | head -n 1 > /tmp/k.pub; echo signed-in-step > /msg; ssh-keygen -Y sign -f /tmp/k.pub -n file /msg; rm /tmp/k.pub\'',
    ].join('\n'),
    { default: [keys.ed.priv, keys.rsa.priv] },
  );
  const root = await unpack(r.imageDigest);
  expect(await readFile(join(root, 'sock'), 'utf8')).toBe('/run/buildkit/ssh_agent.0\n');
  const listed = (await readFile(join(root, 'listed'), 'utf8')).trim().split('\n');
  expect(listed.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual([
    keys.ed.pub.split(' ').slice(0, 2).join(' '),
    keys.rsa.pub.split(' ').slice(0, 2).join(' '),
  ]);
  const msg = await readFile(join(root, 'msg'));
  const sig = await readFile(join(root, 'msg.sig'), 'utf8');
  expect(sig).toMatch(/BEGIN SSH SIGNATURE/);
  expect(await verifies(keys.ed.pub, msg, sig)).toBe(true);
  expect(await verifies(keys.rsa.pub, msg, sig)).toBe(false);
  // Nothing of the mount in the image: no /run, no SSH_AUTH_SOCK, no private key bytes.
  await expect(lstat(join(root, 'run'))).rejects.toThrow(/ENOENT/);
  const image = await engine.images.load(null, r.imageDigest);
  expect(image.config.config?.Env).toEqual(['PATH=/usr/bin:/bin']);
  const body = keys.ed.priv.split('\n')[2];
  for (const l of image.layers) {
    const dir = await mkdtemp(join(work, 'scan-'));
    await applyLayer(await blobs.get(l.digest as BlobDigest), dir);
    const found = execFileSync('sh', ['-c', 'grep -rlF -- "$1" "$2" || true', 'sh', body, dir], {
      encoding: 'utf8',
    });
    expect(found).toBe('');
  }
});

it('id, target, uid/gid/mode; ECDSA and RSA keys sign; the first ssh mount is SSH_AUTH_SOCK', async () => {
  const r = await build(
    [
      'RUN --mount=type=ssh,id=deploy,target=/agent/one,uid=7,gid=8,mode=0660 --mount=type=ssh,id=other sh -c \'echo "$SSH_AUTH_SOCK" > /sock; stat -c %u:%g:%a /agent/one > /owner; ssh-add -l > /fp-one; SSH_AUTH_SOCK=/run/buildkit/ssh_agent.1 ssh-add -L > /other.pub; echo m > /m; SSH_AUTH_SOCK=/run/buildkit/ssh_agent.1 ssh-keygen -Y sign -f /other.pub -n file /m\'',
    ].join('\n'),
    { deploy: [keys.ec.priv], other: [keys.rsa.priv] },
  );
  const root = await unpack(r.imageDigest);
  expect(await readFile(join(root, 'sock'), 'utf8')).toBe('/agent/one\n');
  expect(await readFile(join(root, 'owner'), 'utf8')).toBe('7:8:660\n');
  expect(await readFile(join(root, 'fp-one'), 'utf8')).toMatch(/ecdsa@test|ec@test \(ECDSA\)/);
  const sig = await readFile(join(root, 'm.sig'), 'utf8');
  expect(await verifies(keys.rsa.pub, await readFile(join(root, 'm')), sig)).toBe(true);
  await expect(lstat(join(root, 'agent'))).rejects.toThrow(/ENOENT/);
});

it('a changed key keeps the step cached (keys never key a step); a missing optional id is skipped', async () => {
  const df = 'RUN --mount=type=ssh ssh-add -l > /dev/null; echo done > /d';
  await build(df, { default: [keys.ed.priv] });
  const again = await build(df, { default: [keys.rsa.priv] });
  expect(again.steps.map((s) => s.status).slice(-1)).toEqual(['cached']);
  const opt = await build(
    'RUN --mount=type=ssh,id=absent sh -c \'test -z "$SSH_AUTH_SOCK" && echo skipped > /s\'',
    undefined,
  );
  expect(await readFile(join(await unpack(opt.imageDigest), 's'), 'utf8')).toBe('skipped\n');
  expect(opt.logs).toMatch(/ssh key "absent" not given/);
});

it('a missing required id fails naming the id and the line; nothing stays mounted', async () => {
  const err = await build('RUN echo ok\nRUN --mount=type=ssh,id=deploy,required=true ssh-add -l', {
    default: [keys.ed.priv],
  }).then(
    () => new Error('the build succeeded'),
    (e: unknown) => e as Error,
  );
  expect(isUserBuildError(err)).toBe(true);
  expect(err.message).toMatch(/ssh key "deploy" is required/);
  expect(err.message).toMatch(/^Dockerfile:7: |on line 7: /);
});
