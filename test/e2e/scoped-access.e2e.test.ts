import { join } from 'node:path';
import { Redis } from 'ioredis';
import request from 'supertest';
import { contextTar, runCli } from '@stratum/testing';
import { ApiServerHandle, startTestApi, TestApi } from '../support/api-server';
import { isolatedTool, makeImage, skopeo, writeOciLayout } from './registry-fixtures';

// Scoped access end to end (ACCESS_RULES): each user and API token may pull, push and delete
// only where its rules say. The registry's token flow grants no more than that, a signed-in
// request beyond it is a 403 DENIED with the OCI error body (skopeo and podman report "denied"),
// and the REST API's writes (builds tagging into a repository, import, tag, delete) check the
// same rules for the API token that asks.

const SECRET = 'an-auth-secret-of-at-least-32-characters!';
const CI_TOKEN = 'scoped-ci-token-0123456789abcdef';
const OPS_TOKEN = 'scoped-ops-token-0123456789abcdef';

interface OciErrors {
  errors: { code: string; message: string }[];
}

describe('scoped access (e2e, ACCESS_RULES, token flow + REST)', () => {
  let stack: TestApi;
  let work: string;
  let api: ApiServerHandle;
  let host: string;
  let http: ReturnType<typeof request>;
  let layout: string;
  /** A request with `token` as its Bearer API token. */
  const as =
    (token: string) =>
    (r: request.Test): request.Test =>
      r.set('Authorization', `Bearer ${token}`);
  const asCi = as(CI_TOKEN);
  const asOps = as(OPS_TOKEN);

  beforeAll(async () => {
    stack = await startTestApi('scoped', {
      REGISTRY_AUTH: 'token',
      API_AUTH: 'true',
      AUTH_SECRET: SECRET,
      REGISTRY_USERS: 'alice:alice-password,bob:bob-password',
      API_TOKENS: `ci:${CI_TOKEN},ops:${OPS_TOKEN}`,
      ANONYMOUS_PULL: 'false',
      ACCESS_RULES: [
        'alice:team/*=pull+push+delete',
        'bob:team/*=pull',
        'bob:bob/*=pull+push',
        'token:ci:ci/*=pull+push',
        'token:ops:*=pull+push+delete',
      ].join(','),
    });
    ({ work, api, host, http } = stack);
    layout = join(work, 'layout');
    await writeOciLayout(layout, 'v1', [await makeImage(work, { hello: 'scoped\n' })]);
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:alice-password',
      `oci:${layout}:v1`,
      `docker://${host}/team/app:v1`,
    );
  }, 120_000);

  afterAll(async () => {
    await stack?.close();
  });

  it('the token endpoint grants only what the rules allow', async () => {
    const res = await http
      .get('/v2/token?service=stratum&scope=repository:team/app:pull,push,delete&scope=repository:bob/x:push')
      .auth('bob', 'bob-password')
      .expect(200);
    const claims = JSON.parse(Buffer.from((res.body.token as string).split('.')[1], 'base64url').toString());
    expect(claims.access).toEqual([
      { type: 'repository', name: 'team/app', actions: ['pull'] },
      { type: 'repository', name: 'bob/x', actions: ['push'] },
    ]);
  });

  it('a push beyond the rules is 403 DENIED with the OCI body, by token or Basic; within them it works', async () => {
    const token = (
      await http
        .get('/v2/token?service=stratum&scope=repository:team/app:pull,push')
        .auth('bob', 'bob-password')
        .expect(200)
    ).body.token as string;
    const denied = await http
      .post('/v2/team/app/blobs/uploads/')
      .set('Authorization', `Bearer ${token}`)
      .expect(403);
    expect((denied.body as OciErrors).errors[0]).toMatchObject({ code: 'DENIED' });
    expect((denied.body as OciErrors).errors[0].message).toMatch(/bob may not pull,push team\/app/);
    const basic = await http.post('/v2/team/app/blobs/uploads/').auth('bob', 'bob-password').expect(403);
    expect((basic.body as OciErrors).errors[0].code).toBe('DENIED');
    // the same token still pulls
    await http.get('/v2/team/app/manifests/v1').set('Authorization', `Bearer ${token}`).expect(200);
    // an anonymous request is still challenged (it may sign in), not denied
    await http.post('/v2/team/app/blobs/uploads/').expect(401);
  });

  it('skopeo and podman: pull allowed, push and delete denied per action and repository', async () => {
    await expect(
      skopeo(
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        'bob:bob-password',
        `oci:${layout}:v1`,
        `docker://${host}/team/app:bob`,
      ),
    ).rejects.toThrow(/denied/i);
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'bob:bob-password',
      `oci:${layout}:v1`,
      `docker://${host}/bob/own:v1`,
    );
    const raw = await skopeo(
      'inspect',
      '--raw',
      '--tls-verify=false',
      '--creds',
      'bob:bob-password',
      `docker://${host}/team/app:v1`,
    );
    expect(JSON.parse(raw)).toHaveProperty('layers');
    await expect(
      skopeo('delete', '--tls-verify=false', '--creds', 'bob:bob-password', `docker://${host}/bob/own:v1`),
    ).rejects.toThrow(/denied/i);

    const podman = isolatedTool('podman', join(work, 'podman'));
    await podman('pull', '--tls-verify=false', '--creds', 'bob:bob-password', `${host}/team/app:v1`);
    await podman('tag', `${host}/team/app:v1`, `${host}/team/app:podman`);
    await expect(
      podman('push', '--tls-verify=false', '--creds', 'bob:bob-password', `${host}/team/app:podman`),
    ).rejects.toThrow(/denied/i);
    await podman('push', '--tls-verify=false', '--creds', 'alice:alice-password', `${host}/team/app:podman`);
    await http.head('/v2/team/app/manifests/podman').auth('alice', 'alice-password').expect(200);
    await podman('rmi', '-a', '-f');
  }, 300_000);

  it('robot accounts: made by an admin token with an expiry, shown once, stored hashed, scoped, revocable', async () => {
    const asOps = (r: request.Test): request.Test => r.set('Authorization', `Bearer ${OPS_TOKEN}`);
    const body = {
      name: 'deployer',
      expiresInSeconds: 3600,
      rules: [{ pattern: 'team/*', actions: ['pull', 'push'] }],
    };
    const notAdmin = await http
      .post('/api/v1/robots')
      .set('Authorization', `Bearer ${CI_TOKEN}`)
      .send(body)
      .expect(403);
    expect(notAdmin.body.message).toMatch(/token:ci may not manage robot accounts/);
    const made = (await asOps(http.post('/api/v1/robots')).send(body).expect(201)).body as {
      username: string;
      token: string;
      expiresAt: string;
    };
    expect(made.username).toBe('robot+deployer');
    expect(made.token).toMatch(/^stratum-robot\.deployer\./);
    await asOps(http.post('/api/v1/robots')).send(body).expect(409);
    const listed = (await asOps(http.get('/api/v1/robots')).expect(200)).body as Record<string, unknown>[];
    expect(listed).toEqual([
      expect.objectContaining({ name: 'deployer', username: 'robot+deployer', createdBy: 'token:ops' }),
    ]);
    expect(JSON.stringify(listed)).not.toContain(made.token);
    const stored = new Redis(stack.redis.url);
    try {
      const fields = await stored.hgetall('stratum:robot:deployer');
      expect(JSON.stringify(fields)).not.toContain(made.token.split('.')[2]);
      expect(fields.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(await stored.pttl('stratum:robot:deployer')).toBeGreaterThan(3_000_000);
    } finally {
      stored.disconnect();
    }

    // it pushes where its rules say, and nowhere else
    const creds = `robot+deployer:${made.token}`;
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds,
      `oci:${layout}:v1`,
      `docker://${host}/team/robot:v1`,
    );
    await expect(
      skopeo(
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        creds,
        `oci:${layout}:v1`,
        `docker://${host}/other/robot:v1`,
      ),
    ).rejects.toThrow(/denied|403 \(Forbidden\)/i);
    // the REST API takes its token too, with the same scope; it may not manage robots
    const asRobot = (r: request.Test): request.Test => r.set('Authorization', `Bearer ${made.token}`);
    await asRobot(http.post('/api/v1/images/team/app:v1/tag'))
      .send({ repository: 'team/robot', tag: 'v2' })
      .expect(201);
    await asRobot(http.delete('/api/v1/images/team/robot:v2')).expect(403);
    await asRobot(http.get('/api/v1/robots')).expect(403);

    // revoked: its token is refused at once
    await asOps(http.delete('/api/v1/robots/deployer')).expect(200);
    await http
      .get('/v2/token?service=stratum&scope=repository:team/robot:pull')
      .auth('robot+deployer', made.token)
      .expect(401);
    await asRobot(http.get('/api/v1/builds')).expect(401);
    await asOps(http.delete('/api/v1/robots/deployer')).expect(404);
  }, 120_000);

  it('the CLI creates, lists and revokes robot accounts', async () => {
    const env = { STRATUM_TOKEN: OPS_TOKEN, HOME: work };
    const made = await runCli(
      ['robot', 'create', 'cli-bot', '--expires', '2h', '--allow', 'team/*=pull,push'],
      {
        url: api.url,
        env,
      },
    );
    expect(made.code).toBe(0);
    const token = /token: +(\S+)/.exec(made.stdout)?.[1] ?? '';
    expect(token).toMatch(/^stratum-robot\.cli-bot\./);
    expect(made.stderr).toContain('shown this once');
    await http.head('/v2/team/app/manifests/v1').auth('robot+cli-bot', token).expect(200);
    const listed = await runCli(['robot', 'ls'], { url: api.url, env });
    expect(listed.stdout).toMatch(/robot\+cli-bot +team\/\*=pull,push +\S+ +token:ops/);
    expect(listed.stdout).not.toContain(token);
    const bad = await runCli(['robot', 'create', 'x', '--expires', 'soon', '--allow', 'team/*=pull'], {
      url: api.url,
      env,
    });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--expires "soon"/);
    expect((await runCli(['robot', 'rm', 'cli-bot'], { url: api.url, env })).code).toBe(0);
    await http.head('/v2/team/app/manifests/v1').auth('robot+cli-bot', token).expect(401);
  }, 60_000);

  it('an expired robot token gets 401', async () => {
    const made = (
      await http
        .post('/api/v1/robots')
        .set('Authorization', `Bearer ${OPS_TOKEN}`)
        .send({ name: 'brief', expiresInSeconds: 1, rules: [{ pattern: 'team/*', actions: ['pull'] }] })
        .expect(201)
    ).body as { token: string };
    await http.head('/v2/team/app/manifests/v1').auth('robot+brief', made.token).expect(200);
    await new Promise((r) => setTimeout(r, 1500));
    await http.head('/v2/team/app/manifests/v1').auth('robot+brief', made.token).expect(401);
    await http
      .get('/v2/token?service=stratum&scope=repository:team/app:pull')
      .auth('robot+brief', made.token)
      .expect(401);
    await http.get('/api/v1/builds').set('Authorization', `Bearer ${made.token}`).expect(401);
  });

  it('the REST API checks the same rules for the API token: builds, import, tag, delete', async () => {
    const asCi = (r: request.Test): request.Test => r.set('Authorization', `Bearer ${CI_TOKEN}`);
    const build = await asCi(
      http.post('/api/v1/builds?t=team/app:ci').set('Content-Type', 'application/x-tar'),
    )
      .send(Buffer.alloc(1024))
      .expect(403);
    expect(build.body).toMatchObject({ code: 'DENIED' });
    expect(JSON.stringify(build.body)).toMatch(/token:ci may not push team\/app/);
    const imported = await asCi(http.post('/api/v1/images/import?repository=team/imported'))
      .set('Content-Type', 'application/x-tar')
      .send(Buffer.alloc(1024))
      .expect(403);
    expect(imported.body).toMatchObject({ code: 'DENIED' });
    await asCi(http.post('/api/v1/images/team/app:v1/tag'))
      .send({ repository: 'ci/copy', tag: 'v1' })
      .expect(403);
    await asCi(http.delete('/api/v1/images/team/app:v1')).expect(403);
    // ops may: the tag lands, the delete removes it
    await http
      .post('/api/v1/images/team/app:v1/tag')
      .set('Authorization', `Bearer ${OPS_TOKEN}`)
      .send({ repository: 'ci/copy', tag: 'v1' })
      .expect(201);
    await http.delete('/api/v1/images/ci/copy:v1').set('Authorization', `Bearer ${OPS_TOKEN}`).expect(200);
    await http.head('/v2/team/app/manifests/v1').auth('alice', 'alice-password').expect(200);
  });

  it('REST reads need pull: image list, inspect and history, a build tagging into the repository and its logs', async () => {
    const listed = async (token: string): Promise<string[]> =>
      ((await as(token)(http.get('/api/v1/images')).expect(200)).body as { repository: string }[]).map(
        (i) => i.repository,
      );
    expect(await listed(OPS_TOKEN)).toContain('team/app');
    expect(await listed(CI_TOKEN)).not.toContain('team/app');
    const inspect = await asCi(http.get('/api/v1/images/team/app:v1')).expect(403);
    expect(inspect.body.message).toMatch(/token:ci may not pull team\/app/);
    await asCi(http.get('/api/v1/images/team/app:v1/history')).expect(403);
    await asOps(http.get('/api/v1/images/team/app:v1')).expect(200);
    // a build by ops into team/app (queued: no worker here) is not ci's to read
    const submitted = await asOps(
      http.post('/api/v1/builds?t=team/app:read').set('Content-Type', 'application/x-tar'),
    )
      .send(await contextTar({ Dockerfile: 'FROM scratch\nCOPY Dockerfile /\n' }))
      .expect(202);
    const id = (submitted.body as { id: string }).id;
    await asOps(http.get(`/api/v1/builds/${id}`)).expect(200);
    // not ci's to read, nor to know of: 404 as a missing build, the repository not named
    const hidden = await asCi(http.get(`/api/v1/builds/${id}`)).expect(404);
    expect(hidden.body).toMatchObject({ code: 'BUILD_UNKNOWN', message: `no build with id "${id}"` });
    await asCi(http.get(`/api/v1/builds/${id}/logs`)).expect(404);
    await asOps(http.delete(`/api/v1/builds/${id}`)).expect(200);
  });

  it('the build list, its counts and the trends show only builds of repositories the caller may pull', async () => {
    const tar = await contextTar({ Dockerfile: 'FROM scratch\nCOPY Dockerfile /\n' });
    const submit = async (asWho: typeof asCi, tag: string): Promise<string> =>
      (
        (
          await asWho(http.post(`/api/v1/builds?t=${tag}`).set('Content-Type', 'application/x-tar'))
            .send(tar)
            .expect(202)
        ).body as { id: string }
      ).id;
    // queued (no worker here): one into ci's repository, one into team's, one into both
    const ciBuild = await submit(asCi, 'ci/app:listed');
    const teamBuild = await submit(asOps, 'team/app:listed');
    const bothBuild = await submit(asOps, 'ci/app:both&t=team/app:both');
    const ids = async (asWho: typeof asCi, query = ''): Promise<{ ids: string[]; total: number }> => {
      const page = (await asWho(http.get(`/api/v1/builds?limit=200${query}`)).expect(200)).body as {
        items: { id: string }[];
        total: number;
      };
      return { ids: page.items.map((b) => b.id), total: page.total };
    };
    const ci = await ids(asCi);
    expect(ci.ids).toContain(ciBuild);
    expect(ci.ids).not.toContain(teamBuild);
    expect(ci.ids).not.toContain(bothBuild);
    expect(ci.total).toBe(ci.ids.length);
    const ops = await ids(asOps);
    expect(ops.ids).toEqual(expect.arrayContaining([ciBuild, teamBuild, bothBuild]));
    expect(ops.total).toBe(ops.ids.length);
    expect(ops.total).toBeGreaterThan(ci.total);
    // the per-state counts the dashboard's tabs show, and paging, count visible builds only
    const queued = await ids(asCi, '&state=queued');
    expect(queued.ids).toEqual([ciBuild]);
    expect(queued.total).toBe(1);
    const firstOnly = await ids(asOps, '&state=queued&offset=1');
    expect(firstOnly.total).toBe(3);
    expect(firstOnly.ids).toEqual([teamBuild, ciBuild]);
    // every read of a hidden build is a 404 with the message of a missing one
    for (const hidden of [teamBuild, bothBuild]) {
      const message = `no build with id "${hidden}"`;
      for (const r of [
        http.get(`/api/v1/builds/${hidden}`),
        http.get(`/api/v1/builds/${hidden}/logs`),
        http.get(`/api/v1/builds/${hidden}/output?type=tar`),
        http.delete(`/api/v1/builds/${hidden}`),
        http.post(`/api/v1/builds/${hidden}/retry`),
      ]) {
        expect((await asCi(r).expect(404)).body).toMatchObject({ code: 'BUILD_UNKNOWN', message });
      }
    }
    await asCi(http.get(`/api/v1/builds/${ciBuild}`)).expect(200);
    // the trends count finished builds: cancel all three (queued: dropped at once)
    for (const id of [ciBuild, teamBuild, bothBuild]) {
      await asOps(http.delete(`/api/v1/builds/${id}`)).expect(200);
    }
    const sampled = async (asWho: typeof asCi): Promise<number> =>
      ((await asWho(http.get('/api/v1/builds/stats?days=1')).expect(200)).body as { sampled: number })
        .sampled;
    const [ciSampled, opsSampled] = [await sampled(asCi), await sampled(asOps)];
    expect(opsSampled - ciSampled).toBeGreaterThanOrEqual(2);
    expect(ciSampled).toBe((await ids(asCi, '&state=cancelled')).total);
    expect(opsSampled).toBe((await ids(asOps, '&state=cancelled')).total);
  });

  it('a project needs push on the repositories its builds tag into, at creation and on change', async () => {
    const asCi = (r: request.Test): request.Test => r.set('Authorization', `Bearer ${CI_TOKEN}`);
    const project = { repoUrl: 'https://git.example.com/x/app.git', branches: ['main'] };
    const into = await asCi(http.post('/api/v1/projects'))
      .send({ ...project, name: 'into-team', repository: 'team/app' })
      .expect(403);
    expect(into.body.message).toMatch(/token:ci may not push team\/app/);
    // {repo} defaults to the project's name
    expect(
      (
        await asCi(http.post('/api/v1/projects'))
          .send({ ...project, name: 'named' })
          .expect(403)
      ).body.message,
    ).toMatch(/may not push named/);
    const template = await asCi(http.post('/api/v1/projects'))
      .send({ ...project, name: 'templated', repository: 'ci/app', tags: ['team/{repo}:{sha}'] })
      .expect(403);
    expect(template.body.message).toMatch(/may not push team\/ci\/app/);
    const placeholder = await asCi(http.post('/api/v1/projects'))
      .send({ ...project, name: 'placeholder', repository: 'ci/app', tags: ['ci/{branch}:{sha}'] })
      .expect(403);
    expect(placeholder.body.message).toMatch(
      /tag template "ci\/\{branch\}:\{sha\}" names its repository with a placeholder/,
    );
    await asCi(http.post('/api/v1/projects'))
      .send({
        ...project,
        name: 'ci-app',
        repository: 'ci/app',
        tags: ['{repo}:{branch}', 'ci/mirror:{sha}'],
      })
      .expect(201);
    await asCi(http.put('/api/v1/projects/ci-app')).send({ repository: 'team/app' }).expect(403);
    await asCi(http.put('/api/v1/projects/ci-app')).send({ repository: 'ci/other' }).expect(200);
  });

  it('the audit log records logins, pushes, tags, deletes and robot changes with who and from where', async () => {
    await http.get('/v2/token?service=stratum').auth('alice', 'wrong').expect(401);
    await http.get('/api/v1/audit').set('Authorization', `Bearer ${CI_TOKEN}`).expect(403);
    const entries = (
      await http.get('/api/v1/audit?limit=1000').set('Authorization', `Bearer ${OPS_TOKEN}`).expect(200)
    ).body as {
      action: string;
      subject: string;
      client: string;
      repository?: string;
      target?: string;
      outcome: string;
      at: string;
    }[];
    const has = (e: Record<string, string>): void => {
      expect(entries).toContainEqual(expect.objectContaining(e));
    };
    has({ action: 'login', subject: 'alice', outcome: 'ok' });
    has({ action: 'login', subject: 'alice', outcome: 'refused' });
    has({ action: 'push', subject: 'alice', repository: 'team/app', target: 'v1' });
    has({ action: 'push', subject: 'bob', repository: 'bob/own', target: 'v1' });
    has({ action: 'push', subject: 'robot:deployer', repository: 'team/robot', target: 'v1' });
    has({ action: 'tag', subject: 'token:ops', repository: 'ci/copy', target: 'v1' });
    has({ action: 'delete', subject: 'token:ops', repository: 'ci/copy', target: 'ci/copy:v1' });
    has({ action: 'robot', subject: 'token:ops', target: 'deployer' });
    expect(entries.every((e) => /^127\.0\.0\.1$|^::ffff:127\.0\.0\.1$/.test(e.client))).toBe(true);
    // newest first, and filtered by action
    expect(Date.parse(entries[0].at)).toBeGreaterThanOrEqual(Date.parse(entries[entries.length - 1].at));
    const pushes = (
      await http.get('/api/v1/audit?action=push').set('Authorization', `Bearer ${OPS_TOKEN}`).expect(200)
    ).body as { action: string }[];
    expect(pushes.length).toBeGreaterThanOrEqual(3);
    expect(pushes.every((e) => e.action === 'push')).toBe(true);
  });
});
