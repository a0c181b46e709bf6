// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated class.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { AddressInfo, createServer, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import {
  BuildPage,
  BuildRecord,
  GitForge,
  MaintenanceRun,
  ProjectRefState,
  ProjectTrigger,
  ProjectView,
  WebhookResult,
} from '@stratum/contracts';
import { signWebhook } from '@stratum/git';
import {
  busyboxContext,
  contextTar,
  RedisServerHandle,
  runCli,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
  writeTree,
  pollBuild,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';

jest.setTimeout(120_000);

// Real payloads GitHub sends, from the community's example collection.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const examples = require('@octokit/webhooks-examples') as {
  name: string;
  examples: Record<string, unknown>[];
}[];

const SECRET = 'a-webhook-secret-of-some-length';
const WORKER_ID = 'e2e-git';

let redisServer: RedisServerHandle;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle;
let repoDir: string;
let bareUrl: string;
let sha: string;
let pushBuildId = '';
/** A commit on branch `feature` only: the head of the pull requests below. */
let featureSha: string;
let secretSha: string;
/** Two commits of branch `slow`: a build that sleeps, then one that does not. */
const slowShas: string[] = [];

function git(args: string[], cwd: string): string {
  return execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], {
    cwd,
    encoding: 'utf8',
  }).trim();
}

/** GitHub's push example, pointed at our local repository, branch and commit. */
function githubPush(ref: string, after: string, url = bareUrl): Buffer {
  const push = examples.find((e) => e.name === 'push')?.examples.find((e) => e.ref === 'refs/heads/master');
  if (push === undefined) {
    throw new Error('no push example in @octokit/webhooks-examples');
  }
  const repository = { ...(push.repository as Record<string, unknown>), clone_url: url, html_url: url };
  return Buffer.from(JSON.stringify({ ...push, ref, after, repository }));
}

function postHook(forge: GitForge, body: Buffer, headers: Record<string, string>): request.Test {
  let req = request(api.url).post(`/hooks/${forge}`).set('Content-Type', 'application/json');
  for (const [k, v] of Object.entries(headers)) {
    req = req.set(k, v);
  }
  // A string goes out byte for byte (superagent would JSON-encode a Buffer as {type, data}).
  return req.send(body.toString('utf8'));
}

function githubHeaders(
  body: Buffer,
  delivery: string = randomUUID(),
  secret = SECRET,
): Record<string, string> {
  return {
    'X-GitHub-Event': 'push',
    'X-GitHub-Delivery': delivery,
    'X-Hub-Signature-256': signWebhook(GitForge.GitHub, secret, body),
  };
}

function waitForBuild(id: string, timeoutMs: number): Promise<BuildRecord> {
  return pollBuild(api.url, id, ['succeeded', 'failed', 'cancelled'], timeoutMs, 250);
}

beforeAll(async () => {
  redisServer = await startRedisServer();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-e2e-git-'));
  // A repository with a .dockerignore'd file; the build fails if it or .git reaches the context.
  repoDir = writeTree(
    busyboxContext(
      'COPY . /ctx\nRUN test -f /ctx/app.txt && test ! -e /ctx/secret.txt && test ! -e /ctx/.git\n',
      { '.dockerignore': 'secret.txt\n', 'app.txt': 'hello\n', 'secret.txt': 'do not ship\n' },
    ),
  );
  git(['init', '-q', '-b', 'main'], repoDir);
  git(['add', '-A'], repoDir);
  git(['commit', '-q', '-m', 'first'], repoDir);
  sha = git(['rev-parse', 'HEAD'], repoDir);
  git(['tag', 'v1.2.3'], repoDir);
  git(['checkout', '-q', '-b', 'feature'], repoDir);
  git(['commit', '-q', '--allow-empty', '-m', 'feature work'], repoDir);
  featureSha = git(['rev-parse', 'HEAD'], repoDir);
  // Branch `slow`: a long build, then a quick one (auto-cancel).
  git(['checkout', '-q', '-b', 'slow', 'main'], repoDir);
  writeTree({ Dockerfile: 'FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nRUN sleep 120\n' }, repoDir);
  git(['commit', '-q', '-am', 'slow'], repoDir);
  slowShas.push(git(['rev-parse', 'HEAD'], repoDir));
  writeTree({ Dockerfile: 'FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nRUN true\n' }, repoDir);
  git(['commit', '-q', '-am', 'quick'], repoDir);
  slowShas.push(git(['rev-parse', 'HEAD'], repoDir));
  // Branch `secretpr`: reads the project secret `token` (optional first, then required).
  git(['checkout', '-q', '-b', 'secretpr', 'main'], repoDir);
  writeTree(
    {
      Dockerfile:
        'FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\n' +
        'RUN --mount=type=secret,id=token echo TOKEN-$(test -e /run/secrets/token && echo SEEN || echo ABSENT)\n' +
        'RUN --mount=type=secret,id=token,required=true test -s /run/secrets/token\n',
    },
    repoDir,
  );
  git(['commit', '-q', '-am', 'reads a secret'], repoDir);
  secretSha = git(['rev-parse', 'HEAD'], repoDir);
  git(['checkout', '-q', 'main'], repoDir);
  const bare = join(dataDir, 'hello.git');
  git(['clone', '-q', '--bare', repoDir, bare], dataDir);
  bareUrl = `file://${bare}`;
  const env = {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID,
    GIT_ALLOW_FILE_URLS: 'true',
    MAINTENANCE_SCHEDULE: 'off',
    WEBHOOK_MAX_BODY_BYTES: String(1024 * 1024),
    GIT_CONNECT_TIMEOUT_SECONDS: '2',
    AUTH_SECRET: 'z'.repeat(40),
  };
  api = await startApiServer(testConfig(env));
  worker = await startWorkerProcess({ ...env, JOB_ATTEMPTS: '1', WORKER_SHUTDOWN_TIMEOUT_MS: '3000' });
  const created = await request(api.url)
    .post('/api/v1/projects')
    .send({ name: 'hello', repoUrl: bareUrl, branches: ['main'], secret: SECRET });
  expect(created.status).toBe(201);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await redisServer?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(repoDir, { recursive: true, force: true });
});

describe('projects API', () => {
  it('shows a project without its secret, refuses a duplicate, a bad URL and an unknown name', async () => {
    const got = await request(api.url).get('/api/v1/projects/hello').expect(200);
    const view = got.body as ProjectView;
    expect(view).toMatchObject({
      name: 'hello',
      repository: 'hello',
      tags: ['{repo}:{branch}', '{repo}:{shortsha}'],
      hasSecret: true,
      hasCredentials: false,
    });
    expect(JSON.stringify(got.body)).not.toContain(SECRET);
    await request(api.url).post('/api/v1/projects').send({ name: 'hello', repoUrl: bareUrl }).expect(409);
    await request(api.url).post('/api/v1/projects').send({ name: 'x', repoUrl: 'ftp://h/r' }).expect(400);
    await request(api.url).get('/api/v1/projects/nope').expect(404);
    const put = await request(api.url)
      .put('/api/v1/projects/other')
      .send({ branches: ['x'] });
    expect(put.status).toBe(404);
    const tmp = await request(api.url).post('/api/v1/projects').send({ name: 'tmp', repoUrl: bareUrl });
    expect(tmp.status).toBe(201);
    const changed = await request(api.url)
      .put('/api/v1/projects/tmp')
      .send({ branches: ['release/*'] });
    expect((changed.body as ProjectView).branches).toEqual(['release/*']);
    await request(api.url).delete('/api/v1/projects/tmp').expect(204);
    const list = (await request(api.url).get('/api/v1/projects').expect(200)).body as ProjectView[];
    expect(list.map((p) => p.name)).toEqual(['hello']);
  });
});

describe('webhooks', () => {
  it('a signed GitHub push of main builds that commit, tagged hello:main and hello:<shortsha>', async () => {
    const body = githubPush('refs/heads/main', sha);
    const res = await postHook(GitForge.GitHub, body, githubHeaders(body));
    expect(`${res.status} ${res.text}`).toMatch(/^202 /);
    const result = res.body as WebhookResult;
    expect(result.status).toBe('accepted');
    if (result.status !== 'accepted') {
      return;
    }
    const [trigger] = result.builds;
    expect(trigger).toMatchObject({ source: 'webhook', branch: 'main', sha, error: null });
    expect(trigger.tags).toEqual(['hello:main', `hello:${sha.slice(0, 7)}`]);
    const build = await waitForBuild(trigger.buildId as string, 90_000);
    expect({ state: build.state, error: build.error }).toEqual({ state: 'succeeded', error: null });
    // The RUN step that checks .dockerignore and .git were honoured really ran.
    expect(build.steps.find((s) => s.name.includes('RUN test -f'))?.status).toBe('done');
    const tags = await request(api.url).get('/v2/hello/tags/list').expect(200);
    expect((tags.body as { tags: string[] }).tags.sort()).toEqual([sha.slice(0, 7), 'main'].sort());
    const project = (await request(api.url).get('/api/v1/projects/hello')).body as ProjectView;
    expect(project.lastTrigger?.buildId).toBe(trigger.buildId);
    // The record says where it came from: project, ref, commit, its author and message.
    expect(build.source).toEqual({
      trigger: 'push',
      project: 'hello',
      ref: 'refs/heads/main',
      sha,
      author: 't',
      message: 'first',
      prNumber: null,
      commitUrl: null, // a file:// repository has no web page
      trusted: true,
    });
    pushBuildId = trigger.buildId as string;
  });

  it('lists builds by project and ref (API and CLI), shows each ref’s latest build and serves its badge', async () => {
    // One build from the API, not of the project: left out of the project's list.
    const other = await request(api.url)
      .post('/api/v1/builds?t=loose:1')
      .set('Content-Type', 'application/x-tar')
      .send(await contextTar(busyboxContext('RUN true\n')));
    expect(other.status).toBe(202);
    const otherBuild = (await request(api.url).get(`/api/v1/builds/${(other.body as { id: string }).id}`))
      .body as BuildRecord;
    expect(otherBuild.source).toMatchObject({ trigger: 'api', project: null, sha: null });

    const byProject = (await request(api.url).get('/api/v1/builds?project=hello').expect(200))
      .body as BuildPage;
    expect(byProject.items.map((b) => b.id)).toContain(pushBuildId);
    expect(byProject.items.every((b) => b.source?.project === 'hello')).toBe(true);
    const byRef = (await request(api.url).get('/api/v1/builds?project=hello&ref=main').expect(200))
      .body as BuildPage;
    expect(byRef.items.map((b) => b.id)).toContain(pushBuildId);
    const byFull = (
      await request(api.url).get('/api/v1/builds?project=hello&ref=refs/heads/main').expect(200)
    ).body as BuildPage;
    expect(byFull.total).toBe(byRef.total);
    const none = (await request(api.url).get('/api/v1/builds?project=hello&ref=dev').expect(200))
      .body as BuildPage;
    expect(none).toMatchObject({ total: 0, items: [] });
    const failedOnly = (await request(api.url).get('/api/v1/builds?project=hello&state=failed').expect(200))
      .body as BuildPage;
    expect(failedOnly.items).toEqual([]);
    const bad = await request(api.url).get('/api/v1/builds?ref=main');
    expect(`${bad.status} ${(bad.body as { message: string }).message}`).toMatch(/^400 .*ref needs project/);

    const refs = (await request(api.url).get('/api/v1/projects/hello/refs').expect(200))
      .body as ProjectRefState[];
    expect(refs).toEqual([
      expect.objectContaining({ ref: 'refs/heads/main', buildId: byRef.items[0].id, sha }),
    ]);

    const cli = await runCli(['builds', '--project', 'hello', '--ref', 'main'], { url: api.url });
    expect(`${cli.code} ${cli.stderr}`).toBe('0 ');
    expect(cli.stdout).toContain(pushBuildId);
    expect(cli.stdout).toContain(`hello main@${sha.slice(0, 7)} (push)`);
    expect(cli.stdout).not.toContain(otherBuild.id);

    const badge = await request(api.url).get('/badges/hello/main.svg').expect(200);
    expect(badge.headers['content-type']).toMatch(/^image\/svg\+xml/);
    const svg = (badge.body as Buffer | undefined)?.toString() ?? badge.text;
    expect(svg).toContain('build: passing');
    const unknown = await request(api.url).get('/badges/hello/feature/x.svg').expect(200);
    expect((unknown.body as Buffer | undefined)?.toString() ?? unknown.text).toContain('build: unknown');
    await request(api.url).get('/badges/nope/main.svg').expect(404);
  });

  it('refuses a forged signature, a missing one and a replayed delivery with 401', async () => {
    const body = githubPush('refs/heads/main', sha);
    const forged = await postHook(GitForge.GitHub, body, githubHeaders(body, randomUUID(), 'not-the-secret'));
    expect(forged.status).toBe(401);
    // A body changed after signing is a forgery too.
    const headers = githubHeaders(body);
    const tampered = githubPush('refs/heads/main', 'f'.repeat(40));
    expect((await postHook(GitForge.GitHub, tampered, headers)).status).toBe(401);
    const { 'X-Hub-Signature-256': _, ...unsigned } = githubHeaders(body);
    expect((await postHook(GitForge.GitHub, body, unsigned)).status).toBe(401);

    // A delivery of a branch that does not build: accepted as genuine, then replayed.
    const dev = githubPush('refs/heads/dev', sha);
    const delivery = randomUUID();
    const first = await postHook(GitForge.GitHub, dev, githubHeaders(dev, delivery));
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ status: 'ignored', reason: expect.stringContaining('branch dev') });
    const replay = await postHook(GitForge.GitHub, dev, githubHeaders(dev, delivery));
    expect(replay.status).toBe(401);
    expect((replay.body as { message: string }).message).toMatch(/replay/);
  });

  it('checks the signature before parsing: invalid JSON with a bad signature is a 401, with a good one a 400', async () => {
    const junk = Buffer.from('{"ref": [[[ not json');
    const bad = await postHook(GitForge.GitHub, junk, githubHeaders(junk, randomUUID(), 'not-the-secret'));
    expect(`${bad.status} ${(bad.body as { code?: string }).code}`).toBe('401 UNAUTHORIZED');
    const good = await postHook(GitForge.GitHub, junk, githubHeaders(junk));
    expect(`${good.status} ${(good.body as { code?: string }).code}`).toBe('400 WEBHOOK_INVALID');
    // A signed body is still input: deep nesting is refused before JSON.parse sees it.
    const deep = Buffer.from(`{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`);
    const nested = await postHook(GitForge.GitHub, deep, githubHeaders(deep));
    expect(`${nested.status} ${(nested.body as { message?: string }).message}`).toMatch(
      /^400 .*nests deeper/,
    );
  });

  it('a replay with the delivery id upper-cased, or under a new id, does not build again', async () => {
    const total = async (): Promise<number> =>
      ((await request(api.url).get('/api/v1/builds?limit=1')).body as BuildPage).total;
    const before = await total();
    // A push of main not sent before (the first test's body would already be a replay).
    const push = Buffer.from(
      JSON.stringify({
        ...(JSON.parse(githubPush('refs/heads/main', sha).toString()) as object),
        hook_id: 7,
      }),
    );
    const delivery: string = randomUUID();
    const first = await postHook(GitForge.GitHub, push, githubHeaders(push, delivery));
    expect(`${first.status} ${(first.body as WebhookResult).status}`).toBe('202 accepted');
    const upper = await postHook(GitForge.GitHub, push, githubHeaders(push, delivery.toUpperCase()));
    expect(`${upper.status} ${(upper.body as { message?: string }).message}`).toMatch(/^401 .*replay/);
    const renamed = await postHook(GitForge.GitHub, push, githubHeaders(push, randomUUID()));
    expect(`${renamed.status} ${(renamed.body as { message?: string }).message}`).toMatch(/^401 .*replay/);
    expect(await total()).toBe(before + 1);
    const [trigger] = (first.body as Extract<WebhookResult, { status: 'accepted' }>).builds;
    expect((await waitForBuild(trigger.buildId as string, 90_000)).state).toBe('succeeded');
  });

  it('refuses a body declared past WEBHOOK_MAX_BODY_BYTES with 413', async () => {
    const big = Buffer.alloc(api.config.git.webhookMaxBodyBytes + 1, 0x20);
    const res = await postHook(GitForge.GitHub, big, githubHeaders(big)).catch((err: Error) => err);
    expect(res instanceof Error ? res.message : res.status).toBe(413);
  });

  it('answers 202 ignored, with a reason, for a repository no project builds', async () => {
    const body = githubPush('refs/heads/main', sha, 'https://github.com/someone/else.git');
    const res = await postHook(GitForge.GitHub, body, githubHeaders(body));
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ status: 'ignored', reason: expect.stringContaining('no project') });
  });

  it('checks GitLab’s token and Gitea’s signature', async () => {
    const gitlab = Buffer.from(
      JSON.stringify({
        object_kind: 'push',
        ref: 'refs/heads/feature',
        before: '0'.repeat(40),
        after: sha,
        checkout_sha: sha,
        project: { git_http_url: bareUrl, web_url: bareUrl },
      }),
    );
    const gl = (token: string, uuid = randomUUID()) =>
      postHook(GitForge.GitLab, gitlab, {
        'X-Gitlab-Event': 'Push Hook',
        'X-Gitlab-Token': token,
        'X-Gitlab-Event-UUID': uuid,
      });
    expect((await gl('wrong-token')).status).toBe(401);
    const ok = await gl(SECRET);
    expect(ok.status).toBe(202);
    expect(ok.body).toEqual({ status: 'ignored', reason: expect.stringContaining('branch feature') });

    const gitea = githubPush('refs/heads/feature', sha);
    const gt = (secret: string) =>
      postHook(GitForge.Gitea, gitea, {
        'X-Gitea-Event': 'push',
        'X-Gitea-Delivery': randomUUID(),
        'X-Gitea-Signature': signWebhook(GitForge.Gitea, secret, gitea),
      });
    expect((await gt('wrong-secret-xx')).status).toBe(401);
    expect((await gt(SECRET)).status).toBe(202);
  });
});

describe('tag pushes and pull requests', () => {
  function accepted(res: request.Response): ProjectTrigger {
    expect(`${res.status} ${JSON.stringify(res.body)}`).toMatch(/^202 \{"status":"accepted"/);
    return (res.body as Extract<WebhookResult, { status: 'accepted' }>).builds[0];
  }

  it('a tag push builds the tagged commit as {repo}:{tag}; tag patterns filter', async () => {
    const push = JSON.parse(githubPush('refs/tags/v1.2.3', 'e'.repeat(40)).toString()) as Record<
      string,
      unknown
    >;
    // An annotated tag's `after` is the tag object: head_commit names the commit that is built.
    const body = Buffer.from(JSON.stringify({ ...push, head_commit: { id: sha }, base_ref: null }));
    const t = accepted(await postHook(GitForge.GitHub, body, githubHeaders(body)));
    expect(t).toMatchObject({ branch: 'v1.2.3', sha, tags: ['hello:v1.2.3'], error: null });
    const b = await waitForBuild(t.buildId as string, 90_000);
    expect(b.state).toBe('succeeded');
    expect(b.source).toMatchObject({ trigger: 'tag', ref: 'refs/tags/v1.2.3', sha, project: 'hello' });
    const tags = (await request(api.url).get('/v2/hello/tags/list').expect(200)).body as { tags: string[] };
    expect(tags.tags).toContain('v1.2.3');

    await request(api.url)
      .put('/api/v1/projects/hello')
      .send({ tagPatterns: ['release-*'] })
      .expect(200);
    try {
      const other = githubPush('refs/tags/v9', sha);
      const res = await postHook(GitForge.GitHub, other, githubHeaders(other));
      expect(res.body).toEqual({ status: 'ignored', reason: expect.stringContaining('tag v9 is not built') });
    } finally {
      await request(api.url)
        .put('/api/v1/projects/hello')
        .send({ tagPatterns: ['*'] })
        .expect(200);
    }
  });

  /** GitHub's pull_request example (opened), pointed at our repository and the feature commit. */
  function githubPr(
    number: number,
    action: string,
    fork: boolean,
    headSha = featureSha,
    headRef = 'feature',
  ): Buffer {
    const example = examples
      .find((e) => e.name === 'pull_request')
      ?.examples.find((e) => e.action === 'opened') as Record<string, unknown> & {
      pull_request: { head: { repo: Record<string, unknown> }; base: { repo: Record<string, unknown> } };
    };
    const repository = {
      ...(example.repository as Record<string, unknown>),
      clone_url: bareUrl,
      html_url: bareUrl,
    };
    const pr = example.pull_request;
    const headRepo = fork ? { ...pr.head.repo, id: 999_999, full_name: 'someone/fork' } : pr.head.repo;
    return Buffer.from(
      JSON.stringify({
        ...example,
        action,
        number,
        repository,
        pull_request: {
          ...pr,
          number,
          head: { ...pr.head, sha: headSha, ref: headRef, repo: headRepo },
        },
      }),
    );
  }

  function prHeaders(body: Buffer): Record<string, string> {
    return { ...githubHeaders(body), 'X-GitHub-Event': 'pull_request' };
  }

  it('a GitHub pull request builds its head commit as pr-7; one from a fork is built untrusted', async () => {
    const body = githubPr(7, 'opened', false);
    const t = accepted(await postHook(GitForge.GitHub, body, prHeaders(body)));
    expect(t).toMatchObject({ sha: featureSha, tags: ['hello:pr-7'], error: null });
    const b = await waitForBuild(t.buildId as string, 90_000);
    expect(b.state).toBe('succeeded');
    expect(b.source).toMatchObject({
      trigger: 'pr',
      ref: 'refs/pull/7/head',
      sha: featureSha,
      prNumber: 7,
      message: 'feature work',
      trusted: true,
    });

    const fork = githubPr(9, 'synchronize', true);
    const f = accepted(await postHook(GitForge.GitHub, fork, prHeaders(fork)));
    expect(f.tags).toEqual(['hello:pr-9']);
    const fb = await waitForBuild(f.buildId as string, 90_000);
    expect(fb.source).toMatchObject({ trigger: 'pr', prNumber: 9, trusted: false });

    const closed = githubPr(7, 'closed', false);
    const c = await postHook(GitForge.GitHub, closed, prHeaders(closed));
    expect(c.body).toEqual({
      status: 'ignored',
      reason: expect.stringContaining('#7 closed brings no new code'),
    });
  });

  it('a fork’s pull request runs without the project’s secrets: the optional mount is empty, the required one fails', async () => {
    await request(api.url)
      .put('/api/v1/projects/hello/secrets/token')
      .send({ value: Buffer.from('s3cr3t-value').toString('base64') })
      .expect(204);
    const logOf = async (id: string): Promise<string> =>
      (
        await request(api.url)
          .get(`/api/v1/builds/${id}/logs`)
          .buffer(true)
          .parse((res, cb) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString('utf8')));
            res.on('end', () => cb(null, text));
          })
      ).body as string;
    try {
      // The fork's first (before any trusted build of this commit could leave a cached step).
      const fork = githubPr(11, 'opened', true, secretSha, 'secretpr');
      const f = accepted(await postHook(GitForge.GitHub, fork, prHeaders(fork)));
      const fb = await waitForBuild(f.buildId as string, 90_000);
      expect(fb.source).toMatchObject({ trigger: 'pr', prNumber: 11, trusted: false });
      expect(fb.state).toBe('failed');
      expect(fb.error).toMatch(/secret "token" is required but was not given to this build/);
      const forkLog = await logOf(fb.id);
      expect(forkLog).toContain('TOKEN-ABSENT');
      expect(forkLog).not.toContain('TOKEN-SEEN');
      // The same commit from the repository itself gets the secret: the required step passes.
      const own = githubPr(12, 'opened', false, secretSha, 'secretpr');
      const o = accepted(await postHook(GitForge.GitHub, own, prHeaders(own)));
      const ob = await waitForBuild(o.buildId as string, 90_000);
      expect(ob.source).toMatchObject({ trigger: 'pr', prNumber: 12, trusted: true });
      expect(`${ob.state} ${ob.error}`).toBe('succeeded null');
    } finally {
      await request(api.url).delete('/api/v1/projects/hello/secrets/token').expect(204);
    }
  });

  it('a GitLab Merge Request Hook builds the merge request’s last commit as pr-<iid>', async () => {
    const body = Buffer.from(
      JSON.stringify({
        object_kind: 'merge_request',
        event_type: 'merge_request',
        project: { id: 1, git_http_url: bareUrl, web_url: bareUrl },
        object_attributes: {
          iid: 8,
          action: 'open',
          source_branch: 'feature',
          target_branch: 'main',
          source_project_id: 1,
          target_project_id: 1,
          last_commit: { id: featureSha, message: 'feature work' },
        },
      }),
    );
    const res = await postHook(GitForge.GitLab, body, {
      'X-Gitlab-Event': 'Merge Request Hook',
      'X-Gitlab-Token': SECRET,
      'X-Gitlab-Event-UUID': randomUUID(),
    });
    const t = accepted(res);
    expect(t.tags).toEqual(['hello:pr-8']);
    expect((await waitForBuild(t.buildId as string, 90_000)).source).toMatchObject({
      trigger: 'pr',
      prNumber: 8,
      ref: 'refs/pull/8/head',
      trusted: true,
    });
  });

  it('refuses a pull_request body that is not one with 400, building nothing', async () => {
    const body = Buffer.from(JSON.stringify({ action: 'opened', repository: { clone_url: bareUrl } }));
    const res = await postHook(GitForge.GitHub, body, prHeaders(body));
    expect(`${res.status} ${(res.body as { code: string }).code}`).toBe('400 WEBHOOK_INVALID');
  });
});

describe('auto-cancel', () => {
  it('a newer push to a branch cancels the running build of the older one; its mounts are gone', async () => {
    await request(api.url)
      .post('/api/v1/projects')
      .send({ name: 'slowproj', repoUrl: bareUrl, branches: ['slow'], secret: SECRET })
      .expect(201);
    try {
      const first = githubPush('refs/heads/slow', slowShas[0]);
      const a = (await postHook(GitForge.GitHub, first, githubHeaders(first))).body as Extract<
        WebhookResult,
        { status: 'accepted' }
      >;
      const aId = a.builds[0].buildId as string;
      await pollBuild(api.url, aId, ['running'], 60_000, 100);
      // The sleeping step is under way: its overlay is mounted below the data dir.
      await until(() => mountsUnder(dataDir).length > 0, 30_000);

      const second = githubPush('refs/heads/slow', slowShas[1]);
      const b = (await postHook(GitForge.GitHub, second, githubHeaders(second))).body as Extract<
        WebhookResult,
        { status: 'accepted' }
      >;
      const bId = b.builds[0].buildId as string;
      const cancelled = await waitForBuild(aId, 30_000);
      expect(cancelled.state).toBe('cancelled');
      expect((await waitForBuild(bId, 90_000)).state).toBe('succeeded');
      // Nothing of the cancelled step is left mounted (nor of the finished build).
      await until(() => mountsUnder(dataDir).length === 0, 15_000);
      const byRef = (await request(api.url).get('/api/v1/builds?project=slowproj&ref=slow'))
        .body as BuildPage;
      expect(byRef.items.map((x) => [x.id, x.state])).toEqual([
        [bId, 'succeeded'],
        [aId, 'cancelled'],
      ]);

      // Turned off per project: a newer push leaves the older build alone.
      await request(api.url).put('/api/v1/projects/slowproj').send({ autoCancel: false }).expect(200);
      const again = Buffer.from(JSON.stringify({ ...(JSON.parse(first.toString()) as object), hook_id: 2 }));
      const c = (await postHook(GitForge.GitHub, again, githubHeaders(again))).body as Extract<
        WebhookResult,
        { status: 'accepted' }
      >;
      const cId = c.builds[0].buildId as string;
      await pollBuild(api.url, cId, ['running'], 60_000, 100);
      const later = Buffer.from(JSON.stringify({ ...(JSON.parse(second.toString()) as object), hook_id: 2 }));
      const d = (await postHook(GitForge.GitHub, later, githubHeaders(later))).body as Extract<
        WebhookResult,
        { status: 'accepted' }
      >;
      expect((await waitForBuild(d.builds[0].buildId as string, 90_000)).state).toBe('succeeded');
      expect(((await request(api.url).get(`/api/v1/builds/${cId}`)).body as BuildRecord).state).toBe(
        'running',
      );
      await request(api.url).delete(`/api/v1/builds/${cId}`).expect(200);
      await waitForBuild(cId, 30_000);
    } finally {
      await request(api.url).delete('/api/v1/projects/slowproj');
    }
  });
});

/** Mount points below `dir` (overlays, tmpfs of steps), from /proc/self/mountinfo. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`));
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('a repository URL at a silent port', () => {
  // Accepts connections and never answers: the fetch timeout (300 s) used to hold the request.
  let silent: Server;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    await request(api.url)
      .post('/api/v1/projects')
      .send({
        name: 'silent',
        repoUrl: `http://127.0.0.1:${port}/silent.git`,
        branches: ['main'],
        secret: SECRET,
      })
      .expect(201);
  });
  afterAll(async () => {
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => silent.close(r));
  });

  it('a manual build and a webhook answer within seconds (GIT_CONNECT_TIMEOUT_SECONDS), naming the timeout', async () => {
    const t0 = Date.now();
    const manual = await request(api.url).post('/api/v1/projects/silent/builds').send({ branch: 'main' });
    const manualMs = Date.now() - t0;
    expect(`${manual.status} ${(manual.body as { message: string }).message}`).toMatch(
      /^502 .*timed out after 2 s/,
    );
    expect(manualMs).toBeLessThan(10_000);

    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/silent.git`;
    const body = githubPush('refs/heads/main', sha, url);
    const t1 = Date.now();
    const hook = await postHook(GitForge.GitHub, body, githubHeaders(body));
    const hookMs = Date.now() - t1;
    expect(hook.status).toBe(202);
    const result = hook.body as Extract<WebhookResult, { status: 'accepted' }>;
    expect(result.builds[0]).toMatchObject({
      buildId: null,
      error: expect.stringMatching(/timed out after 2 s/),
    });
    expect(hookMs).toBeLessThan(10_000);
  });
});

describe('maintenance', () => {
  it('POST /api/v1/maintenance/gc runs now and is listed in the runs; the fresh build keeps its blobs', async () => {
    const before = (
      await request(api.url)
        .get('/v2/hello/manifests/main')
        .set('Accept', 'application/vnd.oci.image.manifest.v1+json')
    ).status;
    expect(before).toBe(200);
    const run = await request(api.url).post('/api/v1/maintenance/gc').expect(200);
    const r = run.body as MaintenanceRun;
    expect(r).toMatchObject({ task: 'gc', trigger: 'manual', status: 'succeeded', error: null });
    expect(r.freed.blobs).toBe(0);
    const runs = (await request(api.url).get('/api/v1/maintenance/runs').expect(200))
      .body as MaintenanceRun[];
    expect(runs[0].id).toBe(r.id);
    const after = await request(api.url)
      .get('/v2/hello/manifests/main')
      .set('Accept', 'application/vnd.oci.image.manifest.v1+json');
    expect(after.status).toBe(200);
  });
});
