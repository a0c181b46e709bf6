// ADD of git sources over ssh with the build's ssh key (issue 16): `git@host:repo.git#ref` and
// `ssh://…#ref:subdir` from a real OpenSSH server (Debian's sshd, a child of this test, on port
// 22 of a random loopback address) serving a local bare repository to one authorized key.
// Through the CLI: `stratum build --ssh default=KEY` fetches it (BuildKit mounts the "default"
// ssh id for git sources, client/llb/source.go); without the key the build fails at the ADD
// line; a key the server does not know is refused; a server whose host key differs from the
// worker's ADD_GIT_SSH_KNOWN_HOSTS entry is refused, as is one not listed there at all.
// Debian's buildah 1.28 has no ADD of git repositories: this follows the Dockerfile reference.
//
// Needs: `npm run build` (worker and CLI run compiled), git, openssh-server, runc.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  busyboxContext,
  CliResult,
  requireTools,
  runCli,
  runGit,
  SshdHandle,
  startSshd,
  writeTree,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(300_000);

let stack: StackHandle;
let work: string;
let bare: string;
let keyFile: string;
let strangerKey: string;
let trusted: SshdHandle;
let impostor: SshdHandle;
let unlisted: SshdHandle;
const sha: Record<string, string> = {};

const git = (cwd: string, ...args: string[]): string => runGit(work, cwd, ...args);

function newKey(name: string): string {
  const file = join(work, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return file;
}

const publicLine = (file: string): string => readFileSync(`${file}.pub`, 'utf8').trim();

async function buildOut(
  name: string,
  dockerfileBody: string,
  args: string[] = [],
): Promise<{ res: CliResult; out: string }> {
  const ctx = writeTree(busyboxContext(dockerfileBody), join(work, `ctx-${name}`));
  const out = join(work, `out-${name}`);
  const res = await runCli(['build', ...args, '--output', `type=local,dest=${out}`, ctx], {
    url: stack.api.url,
    timeoutMs: 180_000,
  });
  return { res, out };
}

/** The Dockerfile line of the first step after busyboxContext's FROM (its line 4, as build-sources). */
const ADD_LINE = /line 4|Dockerfile:4/;

beforeAll(async () => {
  requireTools('git', 'ssh', 'ssh-keygen', '/usr/sbin/sshd', '/usr/sbin/runc');
  work = mkdtempSync(join(tmpdir(), 'stratum-e2e-gitssh-'));
  const repoWork = join(work, 'repo-work');
  bare = join(work, 'repo.git');
  mkdirSync(join(repoWork, 'sub'), { recursive: true });
  git(repoWork, 'init', '--quiet', '-b', 'main', '.');
  writeFileSync(join(repoWork, 'a.txt'), 'over ssh\n');
  writeFileSync(join(repoWork, 'sub', 'b.txt'), 'bee\n');
  git(repoWork, 'add', '.');
  git(repoWork, 'commit', '--quiet', '-m', 'one');
  sha.one = git(repoWork, 'rev-parse', 'HEAD');
  git(repoWork, 'tag', 'v1');
  git(work, 'clone', '--quiet', '--bare', repoWork, bare);

  keyFile = newKey('id_build');
  strangerKey = newKey('id_stranger');
  trusted = await startSshd([publicLine(keyFile)]);
  impostor = await startSshd([publicLine(keyFile)]);
  unlisted = await startSshd([publicLine(keyFile)]);
  // The impostor's address is listed with the trusted server's key: its own key differs.
  const trustedKey = trusted.knownHostsLine.split(' ').slice(1).join(' ');
  const knownHosts = join(work, 'known_hosts');
  writeFileSync(knownHosts, `${trusted.knownHostsLine}\n${impostor.host} ${trustedKey}\n`);
  stack = await startStack({
    name: 'gitssh',
    env: {
      AUTH_SECRET: 'e2e-gitssh-auth-secret-0123456789abcdef',
      ADD_GIT_SCHEMES: 'https,ssh',
      ADD_GIT_SSH_KNOWN_HOSTS: knownHosts,
      WORKER_CONCURRENCY: '1',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
  for (const s of [trusted, impostor, unlisted]) {
    await s?.stop();
  }
  if (work !== undefined) {
    rmSync(work, { recursive: true, force: true });
  }
});

it('ADD git@host:repo.git#ref and ssh://…#tag:subdir fetch with --ssh default=KEY', async () => {
  const { res, out } = await buildOut(
    'ok',
    [
      `ADD root@${trusted.host}:${bare}#main /scp`,
      `ADD ssh://root@${trusted.host}${bare}#v1:sub /url/`,
      '',
    ].join('\n'),
    ['--ssh', `default=${keyFile}`],
  );
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  expect(res.stdout).toContain(`commit ${sha.one}`);
  expect(readFileSync(join(out, 'scp/a.txt'), 'utf8')).toBe('over ssh\n');
  expect(existsSync(join(out, 'scp/.git'))).toBe(false);
  expect(readdirSync(join(out, 'url'))).toEqual(['b.txt']);
});

it('without the ssh key the build fails at the ADD line, naming the key to give', async () => {
  const { res } = await buildOut('nokey', `ADD ssh://root@${trusted.host}${bare}#main /x\n`);
  expect(res.code).toBe(1);
  expect(res.stderr).toMatch(ADD_LINE);
  expect(res.stderr).toContain('--ssh default=<private key file>');
});

it('a key the server does not accept is refused naming the ssh id', async () => {
  const { res } = await buildOut('stranger', `ADD ssh://root@${trusted.host}${bare}#main /x\n`, [
    '--ssh',
    `default=${strangerKey}`,
  ]);
  expect(res.code).toBe(1);
  expect(res.stderr).toMatch(ADD_LINE);
  expect(res.stderr).toContain('the ssh server refused the build\'s ssh key "default"');
});

it('a host key other than the one listed in ADD_GIT_SSH_KNOWN_HOSTS is refused; so is an unlisted host', async () => {
  const changed = await buildOut('impostor', `ADD root@${impostor.host}:${bare}#main /x\n`, [
    '--ssh',
    `default=${keyFile}`,
  ]);
  expect(changed.res.code).toBe(1);
  expect(changed.res.stderr).toMatch(ADD_LINE);
  expect(changed.res.stderr).toContain('differs from the one listed for it');
  const unknown = await buildOut('unlisted', `ADD ssh://root@${unlisted.host}${bare}#main /x\n`, [
    '--ssh',
    `default=${keyFile}`,
  ]);
  expect(unknown.res.code).toBe(1);
  expect(unknown.res.stderr).toMatch(ADD_LINE);
  expect(unknown.res.stderr).toContain('is not listed');
});
