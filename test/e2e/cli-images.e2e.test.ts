// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import request from 'supertest';
import { list as listTar } from 'tar';
import { BuildRecord } from '@stratum/contracts';
import {
  busyboxContext,
  busyboxRootfs,
  CLI_BIN,
  CliResult,
  pollBuild,
  runCli,
  writeTree,
} from '@stratum/testing';
import {
  DistributionHandle,
  makeImage,
  skopeo,
  startDistribution,
  writeOciLayout,
} from './registry-fixtures';
import { StackHandle, startStack } from '../support/stack';

// The docker-like commands of the `stratum` CLI, each run through its launcher against a real
// stack (API, redis-server, worker with runc and overlayfs) and a CNCF Distribution registry
// standing for "another registry" (push, pull).

jest.setTimeout(90_000);

let stack: StackHandle;
let distribution: DistributionHandle;
const dirs: string[] = [];
let rootfsTar: string;
let home: string;

function stratum(args: string[], extraEnv: Record<string, string> = {}, input?: string): Promise<CliResult> {
  return runCli(args, {
    url: stack.api.url,
    timeoutMs: 80_000,
    env: { HOME: home, ...extraEnv },
    ...(input !== undefined ? { input } : {}),
  });
}

async function ok(args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const res = await stratum(args, extraEnv);
  if (res.code !== 0) {
    throw new Error(`stratum ${args.join(' ')} exited ${res.code}:\n${res.stdout}\n${res.stderr}`);
  }
  return res.stdout;
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** Sum of the regular files' sizes in a tar: the size Docker gives its layer. */
async function contentSize(file: string): Promise<number> {
  let size = 0;
  await listTar({
    file,
    onReadEntry: (e) => {
      if (e.type === 'File' || e.type === 'OldFile') {
        size += e.size;
      }
    },
  });
  return size;
}

beforeAll(async () => {
  stack = await startStack({ name: 'cli-images', env: { WORKER_CONCURRENCY: '2' } });
  distribution = await startDistribution();
  home = tempDir('stratum-cli-home-');
  rootfsTar = join(tempDir('stratum-cli-rootfs-'), 'rootfs.tar');
  writeFileSync(rootfsTar, busyboxRootfs());
}, 120_000);

afterAll(async () => {
  await distribution?.stop();
  await stack?.stop();
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
  }
});

let baseDigest: string;

describe('images', () => {
  it('import FILE -m -c makes an image with that config and comment; inspect shows it', async () => {
    const res = await stratum([
      'import',
      '-m',
      'busybox from a tar',
      '-c',
      'CMD ["sh"]',
      '-c',
      'ENV GREETING=hello',
      rootfsTar,
      'cli/base:1',
    ]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^importing \S+\nsha256:[0-9a-f]{64}\n$/);
    baseDigest = res.stdout.trim().split('\n').pop() ?? '';
    const [image] = JSON.parse(await ok(['inspect', 'cli/base:1'])) as {
      manifestDigest: string;
      config: { Cmd: string[]; Env: string[] };
      history: { comment: string }[];
    }[];
    expect(image.manifestDigest).toBe(baseDigest);
    expect(image.config.Cmd).toEqual(['sh']);
    expect(image.config.Env).toContain('GREETING=hello');
    expect(image.history).toEqual([expect.objectContaining({ comment: 'busybox from a tar' })]);
  });

  it('import refuses a bad --change before storing anything', async () => {
    const res = await stratum(['import', '-c', 'FROM x', rootfsTar, 'cli/bad:1']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^stratum: .*changes\[0\]/);
  });

  it('import DIR tars a directory (owners and modes kept) into an image that runs', async () => {
    const dir = tempDir('stratum-cli-rootdir-');
    execFileSync('tar', ['-xf', rootfsTar, '-C', dir]);
    writeFileSync(join(dir, 'from-dir.txt'), 'made from a directory\n');
    const digest = (await ok(['import', '-q', dir, 'cli/dir'])).trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const run = await stratum(['run', '--rm', 'cli/dir', 'cat', '/from-dir.txt']);
    expect(run).toMatchObject({ code: 0, stdout: 'made from a directory\n' });
  });

  it('images lists REPOSITORY TAG IMAGE ID CREATED SIZE; -q the ids; --format json the records', async () => {
    const out = await ok(['images']);
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    const [image] = JSON.parse(await ok(['inspect', 'cli/base:1'])) as { configDigest: string }[];
    const row = lines.find((l) => l.startsWith('cli/base '));
    expect(row).toMatch(
      new RegExp(
        `^cli/base\\s+1\\s+${image.configDigest.slice(7, 19)}\\s+(Less than a second|\\d+ seconds) ago\\s+\\d+(\\.\\d+)?[kM]B$`,
      ),
    );
    expect((await ok(['images', '-q', 'cli/base'])).trim()).toBe(image.configDigest.slice(7, 19));
    const listed = JSON.parse(await ok(['images', '--format', 'json', 'cli/base:1'])) as unknown[];
    expect(listed).toEqual([
      expect.objectContaining({ repository: 'cli/base', tag: '1', manifestDigest: baseDigest }),
    ]);
  });

  it('history shows each step newest first with the size of its layer', async () => {
    const out = await ok(['history', 'cli/base:1']);
    const lines = out.split('\n');
    expect(lines[0]).toMatch(/^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
    expect(lines[1]).toMatch(/^[0-9a-f]{12}\s+.* ago\s+\d+(\.\d+)?MB\s+busybox from a tar$/);
    const exact = await ok(['history', '--no-trunc', '-H=false', 'cli/base:1']);
    const size = await contentSize(rootfsTar);
    expect(exact.split('\n')[0]).toMatch(/^IMAGE\s+CREATED AT\s+CREATED BY\s+SIZE\s+COMMENT$/);
    expect(exact.split('\n')[1]).toMatch(
      new RegExp(
        `^sha256:[0-9a-f]{64}\\s+\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\s+${size}\\s+busybox from a tar$`,
      ),
    );
  });

  it('tag adds a name; rmi removes it (and the image from a repository left without tags)', async () => {
    await ok(['tag', 'cli/base:1', 'cli/other:2']);
    expect(await ok(['images', 'cli/other'])).toMatch(/\ncli\/other\s+2\s+/);
    const removed = await ok(['rmi', 'cli/other:2']);
    expect(removed).toBe(`Untagged: cli/other:2\nDeleted: ${baseDigest}\n`);
    expect(await ok(['images', '-q', 'cli/other'])).toBe('');
    await expect(ok(['inspect', 'cli/base:1'])).resolves.toContain(baseDigest); // the other repository keeps it
  });

  it('rmi of a digest that tags name is refused without -f', async () => {
    await ok(['tag', 'cli/base:1', 'cli/keep:1']);
    const refused = await stratum(['rmi', `cli/keep@${baseDigest}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/tagged cli\/keep:1/);
    expect(await ok(['rmi', '-f', `cli/keep@${baseDigest}`])).toBe(
      `Untagged: cli/keep:1\nDeleted: ${baseDigest}\n`,
    );
    const gone = await stratum(['rmi', 'cli/keep:1']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/not found/);
  });

  it('push sends an image to another registry as a push job; pull brings one back into Stratum', async () => {
    const target = `${distribution.host}/far/base:7`;
    const pushed = await stratum(['push', 'cli/base:1', target]);
    expect(pushed.stderr).toBe('');
    expect(pushed.code).toBe(0);
    expect(pushed.stdout).toContain(`${target}: succeeded (uploaded 2,`);
    expect(pushed.stdout).toContain(`digest: ${baseDigest}`);
    const res = await fetch(`http://${distribution.host}/v2/far/base/manifests/7`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(res.headers.get('docker-content-digest')).toBe(baseDigest);

    // Its blobs are ours already: linked, not fetched again (as docker says "Already exists").
    const back = await stratum(['pull', target]);
    expect(back.code).toBe(0);
    expect(back.stdout).toMatch(/^7: Pulling from .*\n[0-9a-f]{12}: Already exists\n/);
    expect(back.stdout).toContain(
      `Digest: ${baseDigest}\nStatus: Downloaded image into Stratum as far/base:7\n`,
    );
    const [image] = JSON.parse(await ok(['inspect', 'far/base:7'])) as { manifestDigest: string }[];
    expect(image.manifestDigest).toBe(baseDigest);
  });

  it('pull fetches what Stratum lacks, verified, with a line per blob off a TTY', async () => {
    const work = tempDir('stratum-cli-pull-');
    const image = await makeImage(work, { 'srv/pulled.txt': 'pulled by stratum\n' });
    await writeOciLayout(join(work, 'layout'), 'v1', [image]);
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${distribution.host}/team/fresh:v1`,
    );
    const pulled = await stratum(['pull', `${distribution.host}/team/fresh:v1`]);
    expect(pulled.stderr).toBe('');
    expect(pulled.code).toBe(0);
    const lines = pulled.stdout.split('\n');
    expect(lines[0]).toBe(`v1: Pulling from ${distribution.host}/team/fresh`);
    // Not a TTY: a line when a blob's status changes, no bars, no byte counts scrolling.
    expect(lines.filter((l) => / Downloading$/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => / Pull complete$/.test(l))).toHaveLength(2);
    expect(pulled.stdout).not.toContain('[=');
    expect(pulled.stdout).toContain(
      `Digest: ${image.digest}\nStatus: Downloaded image into Stratum as team/fresh:v1\n`,
    );
    expect(await ok(['pull', '-q', `${distribution.host}/team/fresh:v1`])).toBe('team/fresh:v1\n');
    const history = await ok(['history', '--no-trunc', '-H=false', 'team/fresh:v1']);
    expect(history.split('\n')[1]).toMatch(/^sha256:[0-9a-f]{64}\s+N\/A\s+stratum e2e\s+18\s+$/);
  });

  it('pull of an image the other registry lacks fails with its message', async () => {
    const res = await stratum(['pull', `${distribution.host}/far/missing:1`]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^stratum: pull .*far\/missing/);
  });
});

describe('containers', () => {
  it('run attached prints stdout and stderr and exits with the command status', async () => {
    const res = await stratum(['run', 'cli/base:1', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 3']);
    expect(res).toMatchObject({ code: 3, stdout: 'to-out\n', stderr: 'to-err\n' });
  });

  let id: string;

  it('run -d, ps -a, logs, diff, commit -m -a -c, rm', async () => {
    id = (
      await ok([
        'run',
        '-d',
        '-e',
        'WHO=cli',
        'cli/base:1',
        'sh',
        '-c',
        'mkdir /newdir && echo $WHO > /newdir/f && echo extra >> /etc/passwd && rm /bin/vi && echo done',
      ])
    ).trim();
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    for (let i = 0; i < 120; i++) {
      const c = (await request(stack.api.url).get(`/api/v1/containers/${id}`)).body as { state: string };
      if (c.state === 'exited') {
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const ps = await ok(['ps', '-a']);
    expect(ps.split('\n')[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS$/);
    expect(ps).toMatch(
      new RegExp(
        `\\n${id.slice(0, 12)}\\s+cli/base:1\\s+"sh -c mkdir /newdir…"\\s+.* ago\\s+Exited \\(0\\) .* ago\\n`,
      ),
    );
    expect(await ok(['ps', '-q'])).not.toContain(id.slice(0, 12)); // exited: only with -a
    expect(await ok(['logs', id.slice(0, 8)])).toBe('done\n');
    expect(await ok(['diff', id.slice(0, 12)])).toBe(
      ['C /bin', 'D /bin/vi', 'C /etc', 'C /etc/passwd', 'A /newdir', 'A /newdir/f', ''].join('\n'),
    );
    const digest = (
      await ok([
        'commit',
        '-m',
        'added newdir',
        '-a',
        'CLI Test <cli@example.com>',
        '-c',
        'CMD ["cat", "/newdir/f"]',
        id,
        'cli/committed:1',
      ])
    ).trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const history = await ok(['history', 'cli/committed:1']);
    expect(history.split('\n')[1]).toMatch(
      /^[0-9a-f]{12}\s+.* ago\s+sh -c mkdir \/newdir && echo \$WHO > \/newdir\/f…\s+\d+B\s+added newdir$/,
    );
    const [image] = JSON.parse(await ok(['inspect', 'cli/committed:1'])) as { author: string }[];
    expect(image.author).toBe('CLI Test <cli@example.com>');
    expect(await stratum(['run', '--rm', 'cli/committed:1'])).toMatchObject({ code: 0, stdout: 'cli\n' });
    expect(await ok(['rm', id])).toBe(`${id}\n`);
    expect(await ok(['ps', '-a', '-q', '--no-trunc'])).not.toContain(id);
  });

  it('diff of an unknown container fails clearly', async () => {
    const res = await stratum(['diff', 'ffffffffffffffffffffffffffffffff']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^stratum: .*ffffffff/);
  });
});

describe('build', () => {
  it('build -q prints only the image digest', async () => {
    const dir = writeTree(busyboxContext('RUN echo quiet > /q\n'));
    dirs.push(dir);
    const res = await stratum(['build', '-q', '-t', 'cli/quiet:1', dir]);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
  });

  it('Ctrl-C during a build cancels it on the server and says so', async () => {
    const dir = writeTree(busyboxContext('RUN echo started && sleep 60\n'));
    dirs.push(dir);
    const child = spawn(CLI_BIN, ['build', '-t', 'cli/cancel:1', dir], {
      env: {
        PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
        STRATUM_URL: stack.api.url,
        HOME: home,
      },
    });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('started') && !interrupted) {
        interrupted = true; // once: a second Ctrl-C exits at once
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    const id = /=> build ([0-9a-f-]{36})/.exec(stdout)?.[1] ?? '';
    expect(stderr).toContain(`=> Ctrl-C: cancelling build ${id}`);
    expect(stderr).toMatch(/build cancelled/);
    expect(code).toBe(130);
    const rec: BuildRecord = await pollBuild(stack.api.url, id, ['cancelled', 'failed', 'succeeded'], 20_000);
    expect(rec.state).toBe('cancelled');
  });
});

describe('login / logout', () => {
  let secured: StackHandle;
  beforeAll(async () => {
    secured = await startStack({
      name: 'cli-login',
      worker: false,
      env: {
        API_AUTH: 'true',
        API_TOKENS: 'ci:cli-token-0123456789',
        AUTH_SECRET: 'cli-e2e-secret-0123456789abcdefghijkl',
      },
    });
  });
  afterAll(async () => {
    await secured?.stop();
  });

  it('keeps the token 0600 under XDG_CONFIG_HOME/stratum and sends it; logout forgets it', async () => {
    const config = tempDir('stratum-cli-config-');
    const env = { STRATUM_URL: secured.api.url, XDG_CONFIG_HOME: config };
    const before = await stratum(['builds'], env);
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(/API token is required/);
    const wrong = await stratum(['login', '-u', 'ci', '--password-stdin'], env, 'not-the-token\n');
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/login refused/);
    const right = await stratum(['login', '-u', 'ci', '--password-stdin'], env, 'cli-token-0123456789\n');
    expect(right).toMatchObject({ code: 0, stdout: 'Login Succeeded\n' });
    const file = join(config, 'stratum', 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(config, 'stratum')).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      servers: { [secured.api.url]: { username: 'ci', secret: 'cli-token-0123456789' } },
    });
    expect(await stratum(['builds'], env)).toMatchObject({ code: 0 });
    expect(await stratum(['logout'], env)).toMatchObject({
      code: 0,
      stdout: `Removing login credentials for ${secured.api.url}\n`,
    });
    expect((await stratum(['builds'], env)).code).toBe(2);
  });
});
