// `stratum build --output` (docker buildx build --output): type=local unpacks the final stage's
// files into a directory, type=tar writes them as a tar (to a file or stdout), type=oci writes
// the image as an OCI image layout tar. Checked on the trees themselves, against Debian's
// buildah building the same directory with its own `--output type=local` (buildah 1.28 has
// local and tar outputs, no oci one: that one is checked with skopeo and umoci), and the
// OCI layout is read by `skopeo inspect oci-archive:` and unpacked by `umoci`.
//
// Needs: `npm run build` (the worker and the CLI run compiled), buildah, skopeo, umoci, runc.
import 'reflect-metadata';
import { execFile, execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { list as listTar } from 'tar';
import {
  busyboxContext,
  CliResult,
  fileTreeSummary,
  requireTools,
  runCli,
  writeTree,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';
import { CLI_BIN } from '../support/worker-process';

jest.setTimeout(240_000);

let stack: StackHandle;
let work: string;
let context: string;

const DOCKERFILE_BODY = [
  'RUN mkdir -p /out/sub && echo hello > /out/sub/a.txt && ln -s a.txt /out/sub/link && echo gone > /out/gone.txt && mkdir /out/olddir && echo x > /out/olddir/f',
  'RUN rm -r /out/gone.txt /out/olddir && chmod 0750 /out/sub && echo again >> /out/sub/a.txt',
  'CMD ["cat", "/out/sub/a.txt"]',
  '',
].join('\n');

function stratum(args: string[]): Promise<CliResult> {
  return runCli(args, { url: stack.api.url, timeoutMs: 120_000 });
}

async function tarEntries(file: string): Promise<Map<string, string>> {
  const entries = new Map<string, string>();
  await listTar({
    file,
    onReadEntry: (e) => {
      entries.set(e.path.replace(/\/$/, ''), `${e.type} ${((e.mode ?? 0) & 0o7777).toString(8)}`);
    },
  });
  return entries;
}

beforeAll(async () => {
  requireTools('buildah', 'skopeo', 'umoci', '/usr/sbin/runc');
  work = mkdtempSync(join(tmpdir(), 'stratum-e2e-outputs-'));
  context = writeTree(busyboxContext(DOCKERFILE_BODY), join(work, 'ctx'));
  stack = await startStack({ name: 'outputs' });
});

afterAll(async () => {
  await stack?.stop();
  if (work !== undefined) {
    rmSync(work, { recursive: true, force: true });
  }
});

it('type=local: the final filesystem, whiteouts applied, as buildah --output type=local gives it', async () => {
  const dest = join(work, 'local');
  const res = await stratum(['build', '-t', 'out/local:1', '--output', `type=local,dest=${dest}`, context]);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  expect(res.stdout).toContain(`=> output type=local written to ${dest}`);
  expect(readFileSync(join(dest, 'out/sub/a.txt'), 'utf8')).toBe('hello\nagain\n');
  expect(readlinkSync(join(dest, 'out/sub/link'))).toBe('a.txt');
  expect(lstatSync(join(dest, 'out/sub')).mode & 0o777).toBe(0o750);
  expect(() => lstatSync(join(dest, 'out/gone.txt'))).toThrow();
  expect(() => lstatSync(join(dest, 'out/olddir'))).toThrow();
  expect(readdirSync(dest).some((n) => n.startsWith('.wh.'))).toBe(false);
  expect(lstatSync(join(dest, 'bin/busybox')).isFile()).toBe(true);

  const theirs = join(work, 'buildah-local');
  const root = join(work, 'buildah');
  execFileSync(
    'buildah',
    [
      '--root',
      join(root, 'root'),
      '--runroot',
      join(root, 'runroot'),
      '--storage-driver',
      'overlay',
      'build',
      '--runtime',
      '/usr/sbin/runc',
      '--isolation',
      'oci',
      '--network',
      'host',
      '--output',
      `type=local,dest=${theirs}`,
      context,
    ],
    { stdio: 'pipe', maxBuffer: 1 << 28 },
  );
  const ours = fileTreeSummary(dest);
  const buildah = fileTreeSummary(theirs);
  // buildah leaves the mount points of its RUN container behind (/etc/hosts, /run/.containerenv…)
  for (const p of [...buildah.keys()]) {
    if (
      !ours.has(p) &&
      /^(etc\/(hosts|resolv\.conf|hostname)|run\/\.containerenv|run|proc|sys|dev)(\/|$)/.test(p)
    ) {
      buildah.delete(p);
    }
  }
  expect([...ours.entries()].sort()).toEqual([...buildah.entries()].sort());
});

it('type=tar to a file and to stdout ("-"): the same entries, no whiteouts', async () => {
  const file = join(work, 'fs.tar');
  const res = await stratum(['build', '--output', `type=tar,dest=${file}`, context]);
  expect(res.code).toBe(0);
  const entries = await tarEntries(file);
  expect(entries.get('out/sub/a.txt')).toBe('File 644');
  expect(entries.get('out/sub')).toBe('Directory 750');
  expect(entries.get('out/sub/link')).toMatch(/^SymbolicLink/);
  expect(entries.has('out/gone.txt')).toBe(false);
  expect([...entries.keys()].some((p) => p.split('/').some((n) => n.startsWith('.wh.')))).toBe(false);

  const piped = join(work, 'stdout.tar');
  const out = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(
      'sh',
      ['-c', `"${CLI_BIN}" build -o - "${context}" > "${piped}"`],
      { env: { PATH: `${dirname(process.execPath)}:${process.env.PATH}`, STRATUM_URL: stack.api.url } },
      (err, _stdout, stderr) => resolve({ code: err === null ? 0 : (err.code as number), stderr }),
    );
  });
  expect(out.code).toBe(0);
  // Progress went to stderr; stdout is the tar alone.
  expect(out.stderr).toContain('=> output type=tar written to stdout');
  expect([...(await tarEntries(piped)).entries()].sort()).toEqual([...entries.entries()].sort());
});

it('type=oci: an OCI layout tar that skopeo inspects and umoci unpacks', async () => {
  const file = join(work, 'image.oci.tar');
  const res = await stratum(['build', '-t', 'out/oci:7', '--output', `type=oci,dest=${file}`, context]);
  expect(res.code).toBe(0);
  const digest = /=> done: (sha256:[0-9a-f]{64})/.exec(res.stdout)?.[1];
  const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${file}`]).toString()) as {
    Digest: string;
    Layers: string[];
  };
  expect(inspect.Digest).toBe(digest);
  expect(inspect.Layers).toHaveLength(3);
  const entries = await tarEntries(file);
  expect(entries.has('oci-layout')).toBe(true);
  const index = JSON.parse(execFileSync('tar', ['-xOf', file, 'index.json']).toString()) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  expect(index.manifests[0]).toMatchObject({
    digest,
    annotations: { 'org.opencontainers.image.ref.name': '7', 'io.containerd.image.name': 'out/oci:7' },
  });
  const layout = join(work, 'layout');
  mkdirSync(layout);
  execFileSync('tar', ['-xf', file, '-C', layout]);
  const bundle = join(work, 'bundle');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${layout}:7`, bundle]);
  expect(readFileSync(join(bundle, 'out/sub/a.txt'), 'utf8')).toBe('hello\nagain\n');
  expect(() => lstatSync(join(bundle, 'out/gone.txt'))).toThrow();
});

it('bad --output specs are refused before anything is sent (exit 2)', async () => {
  for (const [spec, msg] of [
    ['type=registry', /not an output here/],
    ['type=local,dest=-', /needs a directory/],
    ['type=zip,dest=x', /unknown type "zip"/],
    ['type=tar', /dest= is required/],
  ] as const) {
    const res = await stratum(['build', '--output', spec, context]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(msg);
  }
});
