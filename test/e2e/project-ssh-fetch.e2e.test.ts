// A project whose repository is private and reached over ssh (`ssh://root@host/path.git`; as
// `git@github.com:org/repo.git`): the API fetches it with the project's deploy key (its ssh id
// "default") and checks the server's host key strictly against the project's sshKnownHosts. A
// real OpenSSH server (Debian's sshd, a child of this test) serves a bare repository to the
// deploy key only. A deploy key without known hosts is refused; a host key other than the one
// listed is refused; with both right the build runs; the key file is gone afterwards.
//
// Needs: `npm run build` (the worker runs compiled), git, openssh-server, runc.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord, ProjectTrigger } from '@stratum/contracts';
import {
  busyboxContext,
  pollBuild,
  requireTools,
  runGit,
  SshdHandle,
  startSshd,
  writeTree,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(300_000);

let stack: StackHandle;
let sshd: SshdHandle;
let work: string;
let keyFile: string;
let sha: string;

const git = (cwd: string, ...args: string[]): string => runGit(work, cwd, ...args);

function newKey(name: string): string {
  const file = join(work, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return file;
}

/** Manual build of `sha`: the trigger (its error when the fetch failed). */
async function trigger(): Promise<ProjectTrigger> {
  const res = await request(stack.api.url)
    .post('/api/v1/projects/private/builds')
    .send({ branch: 'main', sha });
  expect(res.status).toBeLessThan(300);
  return res.body as ProjectTrigger;
}

const setKnownHosts = (sshKnownHosts: string | null): request.Test =>
  request(stack.api.url).put('/api/v1/projects/private').send({ sshKnownHosts });

beforeAll(async () => {
  requireTools('git', 'ssh-keygen', '/usr/sbin/sshd', 'runc');
  work = mkdtempSync(join(tmpdir(), 'stratum-e2e-project-ssh-'));
  keyFile = newKey('deploy');
  sshd = await startSshd([readFileSync(`${keyFile}.pub`, 'utf8').trim()]);
  const repo = writeTree(busyboxContext('RUN echo fetched over ssh > /proof'), join(work, 'repo'));
  git(repo, 'init', '-q', '-b', 'main');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'first');
  sha = git(repo, 'rev-parse', 'HEAD').trim();
  git(work, 'clone', '-q', '--bare', repo, join(work, 'private.git'));
  stack = await startStack({
    name: 'project-ssh',
    env: {
      AUTH_SECRET: 'e2e-project-ssh-auth-secret-0123456789',
      WORKER_CONCURRENCY: '1',
      MAINTENANCE_SCHEDULE: 'off',
    },
  });
  await request(stack.api.url)
    .post('/api/v1/projects')
    .send({
      name: 'private',
      repoUrl: `ssh://root@${sshd.host}${join(work, 'private.git')}`,
      branches: ['main'],
    })
    .expect(201);
  await request(stack.api.url)
    .put('/api/v1/projects/private/ssh/default')
    .send({ keys: [readFileSync(keyFile).toString('base64')] })
    .expect(200);
});

afterAll(async () => {
  await stack?.stop();
  await sshd?.stop();
  if (work !== undefined) {
    rmSync(work, { recursive: true, force: true });
  }
});

it('a deploy key without sshKnownHosts is refused, saying what to set', async () => {
  const t = await trigger();
  expect(t.buildId).toBeNull();
  expect(t.error).toMatch(/has a deploy key \("default"\) .* but no sshKnownHosts/);
});

it('sshKnownHosts must be known_hosts lines (400 naming the line)', async () => {
  const bad = await setKnownHosts('not a host key\n');
  expect(bad.status).toBe(400);
  expect(JSON.stringify(bad.body)).toMatch(/sshKnownHosts.*line 1 is not/);
});

it('a server whose host key is not the listed one is refused', async () => {
  const other = newKey('impostor-host');
  const otherPub = readFileSync(`${other}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  await setKnownHosts(`${sshd.host} ${otherPub}\n`).expect(200);
  const t = await trigger();
  expect(t.buildId).toBeNull();
  expect(t.error).toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
});

it('the deploy key and the right host key: the build runs from the private repository; no key file is left', async () => {
  const view = await setKnownHosts(`${sshd.knownHostsLine}\n`).expect(200);
  expect((view.body as { sshKnownHosts: string }).sshKnownHosts).toBe(`${sshd.knownHostsLine}\n`);
  const t = await trigger();
  expect(t.error).toBeNull();
  const rec: BuildRecord = await pollBuild(
    stack.api.url,
    t.buildId as string,
    ['succeeded', 'failed'],
    120_000,
    250,
  );
  expect({ state: rec.state, error: rec.error ?? null }).toEqual({ state: 'succeeded', error: null });
  // The key was written for each git command into its own temporary HOME, removed with it.
  const body = readFileSync(keyFile, 'utf8').split('\n')[2];
  const leftovers = readdirSync(tmpdir())
    .filter((n) => n.startsWith('stratum-git-home-'))
    .filter((n) => {
      try {
        return execFileSync('grep', ['-rlF', body, join(tmpdir(), n)], { encoding: 'utf8' }).trim() !== '';
      } catch {
        return false;
      }
    });
  expect(leftovers).toEqual([]);
});
