// SSH keys and project secrets end to end. `stratum build --ssh default=KEY` through the API
// (sealed in Redis) to the worker's agent: the step's ssh-add lists the key and its
// ssh-keygen -Y sign makes a signature the host verifies with the public key; the key's bytes
// are then nowhere (Redis and its AOF, the record, the log). A project's secrets and deploy key
// (set with `stratum projects secrets set`, listed by name and public key only) reach a
// webhook-triggered build of it, and not an untrusted one; deleting the project drops them.
import 'reflect-metadata';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, GitForge, ProjectTrigger, WebhookResult } from '@stratum/contracts';
import { signWebhook } from '@stratum/git';
import {
  buildSecretBundleKeys,
  busyboxContext,
  CliResult,
  pollBuild,
  requireTools,
  runCli,
  sshToolsTar,
  writeTree,
} from '@stratum/testing';
import { ProjectBuilder } from '../../apps/api/src/projects/project-builder';
import { ProjectStore } from '../../apps/api/src/projects/project-store';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(180_000);

const HOOK_SECRET = 'a-webhook-secret-for-ssh-e2e';
const TOKEN = 'project-token-VALUE-5c1e93b7aa';

let stack: StackHandle;
const dirs: string[] = [];
let keyFile: string;
let pub: string;
let fingerprint: string;
let tools: Buffer;

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function stratum(args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, {
    url: stack.api.url,
    timeoutMs: 120_000,
    env: { STRATUM_NO_CONTEXT_CACHE: '1', ...extraEnv },
  });
}

function git(args: string[], cwd: string): string {
  return execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd,
    encoding: 'utf8',
  }).trim();
}

/** Paths under `dir` holding `needle` (grep -r: 1 means none). */
function grepTree(dir: string, needle: string): string[] {
  const r = spawnSync('grep', ['-rlaF', '--', needle, dir], { encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 1) {
    throw new Error(`grep failed: ${r.stderr}`);
  }
  return r.stdout.split('\n').filter(Boolean);
}

/** The signature block a step printed between markers, verified on the host against `pub`. */
function verifyPrinted(log: string, message: string, publicKey: string): Promise<boolean> {
  const m = /-----BEGIN SSH SIGNATURE-----([\s\S]*?)-----END SSH SIGNATURE-----/.exec(log);
  if (m === null) {
    throw new Error(`no signature in the log:\n${log}`);
  }
  // The base64 lines, without whatever prefix the CLI's progress puts before a step's output.
  const lines = m[1]
    .split('\n')
    .map((l) => l.trim().split(/\s+/).pop() ?? '')
    .filter((l) => /^[A-Za-z0-9+/=]+$/.test(l));
  const armored = `-----BEGIN SSH SIGNATURE-----\n${lines.join('\n')}\n-----END SSH SIGNATURE-----`;
  const d = tempDir('stratum-ssh-verify-');
  writeFileSync(join(d, 'allowed'), `signer ${publicKey}\n`);
  writeFileSync(join(d, 'sig'), `${armored}\n`);
  return new Promise((resolve) => {
    const c = execFile(
      'ssh-keygen',
      ['-Y', 'verify', '-f', join(d, 'allowed'), '-I', 'signer', '-n', 'file', '-s', join(d, 'sig')],
      (err) => resolve(err === null),
    );
    c.stdin?.end(message);
  });
}

/** A step that lists the agent's keys and prints a signature of "signed-by-step\n". */
const SIGNING_STEP =
  "RUN --mount=type=ssh,required=true sh -c 'ssh-add -l; ssh-add -L | head -n 1 > /tmp/k.pub; echo signed-by-step > /tmp/m; ssh-keygen -Y sign -f /tmp/k.pub -n file /tmp/m >/dev/null 2>&1; cat /tmp/m.sig'";

const context = (extraSteps: string): Record<string, string | Buffer> =>
  busyboxContext(`ADD ssh-tools.tar /\nENV PATH=/usr/bin:/bin\n${extraSteps}`, { 'ssh-tools.tar': tools });

/** The text of a build's log events (the SSE stream's `log` data). */
async function logOf(id: string): Promise<string> {
  const res = await request(stack.api.url)
    .get(`/api/v1/builds/${id}/logs`)
    .buffer(true)
    .parse((r, cb) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString('utf8')));
      r.on('end', () => cb(null, text));
    });
  return (res.body as string)
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)) as { type: string; text?: string })
    .filter((e) => e.type === 'log')
    .map((e) => e.text ?? '')
    .join('');
}

beforeAll(async () => {
  requireTools('ssh-keygen', 'ssh-add', 'git', 'grep', 'redis-server');
  tools = sshToolsTar();
  const d = tempDir('stratum-ssh-key-');
  keyFile = join(d, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'e2e@ssh', '-f', keyFile]);
  pub = readFileSync(`${keyFile}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  fingerprint = execFileSync('ssh-keygen', ['-lf', keyFile], { encoding: 'utf8' }).split(' ')[1];
  stack = await startStack({
    name: 'ssh',
    env: {
      AUTH_SECRET: 'e2e-ssh-auth-secret-0123456789abcdef',
      WORKER_CONCURRENCY: '1',
      GIT_ALLOW_FILE_URLS: 'true',
      MAINTENANCE_SCHEDULE: 'off',
    },
    redisAppendonly: true,
  });
});

afterAll(async () => {
  await stack?.stop();
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
  }
});

it('stratum build --ssh default=KEY: the step lists the key and signs with it; the key is then nowhere', async () => {
  const dir = writeTree(context(SIGNING_STEP));
  dirs.push(dir);
  const r = await stratum(['build', '-t', 'e2e/ssh:1', '--ssh', `default=${keyFile}`, dir]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(fingerprint);
  expect(await verifyPrinted(r.stdout, 'signed-by-step\n', pub)).toBe(true);
  const id = /=> build ([0-9a-f-]{36})/.exec(r.stdout)?.[1] as string;
  // The private key's bytes: not in Redis or its AOF (the bundle is deleted), the record, the log.
  const body = readFileSync(keyFile, 'utf8').split('\n')[2];
  expect(body.length).toBeGreaterThan(40);
  await request(stack.api.url).get('/healthz');
  expect(grepTree(stack.redis.dir, body)).toEqual([]);
  expect(grepTree(stack.redis.dir, 'stratum:build-secrets:').length).toBeGreaterThan(0); // sealed, it was there
  expect(await buildSecretBundleKeys(stack.redis.url)).toEqual([]);
  const record = await request(stack.api.url).get(`/api/v1/builds/${id}`).expect(200);
  expect(JSON.stringify(record.body)).not.toContain(body);
  expect(await logOf(id)).not.toContain(body);
  // Its data dir holds no socket or key either (the agent and its directory are gone).
  expect(grepTree(stack.dataDir, body)).toEqual([]);
});

it('bad --ssh input: an id the build lacks fails naming it and the line; an unusable key is refused at submission', async () => {
  const dir = writeTree(context('RUN --mount=type=ssh,id=deploy,required=true true'));
  dirs.push(dir);
  const missing = await stratum(['build', '-t', 'e2e/ssh:2', '--ssh', `default=${keyFile}`, dir]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/Dockerfile:6: .*ssh key "deploy" is required/);
  const bad = await stratum(['build', '-t', 'e2e/ssh:3', '--ssh', `deploy=${keyFile}.pub`, dir]);
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toMatch(/ssh key for "deploy" is a public key/);
});

describe('project secrets and deploy key', () => {
  let bareUrl: string;
  let sha: string;

  beforeAll(async () => {
    const repo = writeTree(
      context(
        `RUN echo a project build\n${SIGNING_STEP}\nRUN --mount=type=secret,id=tok,required=true sh -c 'echo token=$(cat /run/secrets/tok)'`,
      ),
    );
    dirs.push(repo);
    git(['init', '-q', '-b', 'main'], repo);
    git(['add', '-A'], repo);
    git(['commit', '-q', '-m', 'first'], repo);
    sha = git(['rev-parse', 'HEAD'], repo);
    const bare = join(tempDir('stratum-ssh-git-'), 'app.git');
    git(['clone', '-q', '--bare', repo, bare], repo);
    bareUrl = `file://${bare}`;
    await request(stack.api.url)
      .post('/api/v1/projects')
      .send({ name: 'app', repoUrl: bareUrl, branches: ['main'], secret: HOOK_SECRET })
      .expect(201);
  });

  it('stratum projects secrets set/ls/rm: names and public keys shown, never a value', async () => {
    const set = await stratum(
      [
        'projects',
        'secrets',
        'set',
        'app',
        '--secret',
        'id=tok,env=TOK',
        '--secret',
        'id=gone,env=TOK',
        '--ssh',
        `default=${keyFile}`,
      ],
      { TOK: TOKEN },
    );
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(set.stdout).toContain(`ssh default set: ${pub}`);
    expect((await stratum(['projects', 'secrets', 'rm', 'app', 'gone'])).code).toBe(0);
    const rm = await stratum(['projects', 'secrets', 'rm', 'app', 'gone']);
    expect(rm.code).not.toBe(0);
    expect(rm.stderr).toMatch(/no secret "gone"/);
    const ls = await stratum(['projects', 'secrets', 'ls', 'app']);
    expect(ls.stdout).toBe(`secret  tok\nssh     default  ${pub}\n`);
    const listed = await request(stack.api.url).get('/api/v1/projects/app/secrets').expect(200);
    expect(listed.body).toEqual({ secrets: ['tok'], ssh: [{ id: 'default', publicKeys: [pub] }] });
    expect(JSON.stringify((await request(stack.api.url).get('/api/v1/projects/app')).body)).not.toContain(
      TOKEN,
    );
    // Bad input: unknown project, a bad id, an encrypted key.
    await request(stack.api.url).get('/api/v1/projects/nope/secrets').expect(404);
    await request(stack.api.url).put('/api/v1/projects/app/secrets/..').send({ value: 'eA==' }).expect(400);
    const locked = join(tempDir('stratum-ssh-locked-'), 'k');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'a-passphrase', '-f', locked]);
    const enc = await request(stack.api.url)
      .put('/api/v1/projects/app/ssh/deploy')
      .send({ keys: [readFileSync(locked).toString('base64')] })
      .expect(400);
    expect((enc.body as { message: string }).message).toMatch(/passphrase-protected/);
  });

  it("stratum projects secrets set --ssh-known-hosts FILE|-: the project's sshKnownHosts, read back through the API", async () => {
    // A project of its own: known hosts change how an ssh:// repository is fetched, not app's file:// one.
    await request(stack.api.url)
      .post('/api/v1/projects')
      .send({ name: 'kh', repoUrl: bareUrl, branches: ['main'] })
      .expect(201);
    const hostKey = (name: string): string => {
      const k = join(tempDir('stratum-ssh-hostkey-'), 'k');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k]);
      return `${name} ${readFileSync(`${k}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ')}`;
    };
    const knownHosts = async (): Promise<unknown> =>
      (
        (await request(stack.api.url).get('/api/v1/projects/kh').expect(200)).body as {
          sshKnownHosts: unknown;
        }
      ).sshKnownHosts;
    const file = join(tempDir('stratum-ssh-known-'), 'known_hosts');
    const one = `# git.example.test, checked out of band\n${hostKey('git.example.test')}\n`;
    writeFileSync(file, one);
    const set = await stratum(['projects', 'secrets', 'set', 'kh', '--ssh-known-hosts', file]);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(set.stdout).toBe('ssh known hosts set: 1 line\n');
    expect(await knownHosts()).toBe(one);
    // `-`: from stdin; the stored lines are replaced.
    const two = `${hostKey('[git.example.test]:2222')}\n${hostKey('mirror.example.test')}\n`;
    const fromStdin = await runCli(['projects', 'secrets', 'set', 'kh', '--ssh-known-hosts', '-'], {
      url: stack.api.url,
      input: two,
    });
    expect(fromStdin.stderr).toBe('');
    expect(fromStdin.stdout).toBe('ssh known hosts set: 2 lines\n');
    expect(await knownHosts()).toBe(two);
    // Bad input: lines that are not known_hosts lines (the server's check, naming the line), a
    // missing file. Exit 2, and the stored lines stay.
    writeFileSync(file, 'git.example.test not-a-key\n');
    const bad = await stratum(['projects', 'secrets', 'set', 'kh', '--ssh-known-hosts', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/sshKnownHosts.*line 1 is not/);
    const missing = await stratum([
      'projects',
      'secrets',
      'set',
      'kh',
      '--ssh-known-hosts',
      join(file, 'nope'),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--ssh-known-hosts: cannot read .*nope/);
    expect(await knownHosts()).toBe(two);
    await request(stack.api.url).delete('/api/v1/projects/kh').expect(204);
  });

  it('a webhook-triggered build of the project gets them; an untrusted build does not', async () => {
    // GitHub's push example (the community's collection), pointed at our repository and commit.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const examples = require('@octokit/webhooks-examples') as {
      name: string;
      examples: Record<string, unknown>[];
    }[];
    const push = examples.find((e) => e.name === 'push')?.examples.find((e) => e.ref === 'refs/heads/master');
    const repository = {
      ...(push?.repository as Record<string, unknown>),
      clone_url: bareUrl,
      html_url: bareUrl,
    };
    const payload = Buffer.from(JSON.stringify({ ...push, ref: 'refs/heads/main', after: sha, repository }));
    const hook = await request(stack.api.url)
      .post(`/hooks/${GitForge.GitHub}`)
      .set('Content-Type', 'application/json')
      .set('X-GitHub-Event', 'push')
      .set('X-GitHub-Delivery', randomUUID())
      .set('X-Hub-Signature-256', signWebhook(GitForge.GitHub, HOOK_SECRET, payload))
      .send(payload.toString('utf8'));
    expect(hook.status).toBe(202);
    const result = hook.body as WebhookResult;
    expect(result.status).toBe('accepted');
    const trigger = (result as { builds: ProjectTrigger[] }).builds[0];
    expect(trigger.error).toBeNull();
    const rec: BuildRecord = await pollBuild(
      stack.api.url,
      trigger.buildId as string,
      ['succeeded', 'failed'],
      120_000,
      250,
    );
    const log = await logOf(rec.id);
    expect(rec.error ?? null).toBeNull();
    expect(rec.state).toBe('succeeded');
    expect(log).toContain(fingerprint);
    expect(log).toContain('token=****');
    expect(log).not.toContain(TOKEN);
    expect(await verifyPrinted(log, 'signed-by-step\n', pub)).toBe(true);

    // The hook point for builds of outside code (pull requests from forks): no project secrets.
    const builder = stack.api.app.get(ProjectBuilder);
    const project = await stack.api.app.get(ProjectStore).require('app');
    const untrusted = await builder.build(project, 'main', sha, 'manual', { trusted: false });
    expect(untrusted.error).toBeNull();
    const failed = await pollBuild(
      stack.api.url,
      untrusted.buildId as string,
      ['succeeded', 'failed'],
      120_000,
      250,
    );
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatch(/ssh key "default" is required but was not given/);
  });

  it('deleting the project deletes its secrets', async () => {
    await request(stack.api.url).delete('/api/v1/projects/app').expect(204);
    const { Redis } = await import('ioredis');
    const redis = new Redis(stack.redis.url);
    try {
      expect(await redis.keys('stratum:project-secrets:*')).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });
});
