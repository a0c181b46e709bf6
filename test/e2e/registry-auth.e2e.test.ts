import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import request from 'supertest';
import { startTestApi, TestApi } from '../support/api-server';
import { isolatedTool, makeImage, run, sha, skopeo, writeOciLayout } from './registry-fixtures';

// Registry auth end to end: REGISTRY_AUTH=token with users (bcrypt and plain) and an API token,
// anonymous pull off except for public/*; real clients log in through the Docker token flow
// (skopeo --creds, podman login + push, buildah push --creds); an unauthorised push is a 401
// with the challenge and leaves nothing behind; API_AUTH guards /api/v1.

const SECRET = 'an-auth-secret-of-at-least-32-characters!';
const API_TOKEN = 'stratum-ci-token-0123456789abcdef';

describe('registry auth (e2e, token flow, skopeo/podman/buildah)', () => {
  let stack: TestApi;
  let work: string;
  let host: string;
  let http: ReturnType<typeof request>;
  let layout: string;
  let imageDigest: string;

  beforeAll(async () => {
    stack = await startTestApi('auth', {
      REGISTRY_AUTH: 'token',
      AUTH_SECRET: SECRET,
      REGISTRY_USERS: `alice:${bcrypt.hashSync('wonderland', 8)},bob:plain-password`,
      API_TOKENS: `ci:${API_TOKEN}`,
      API_AUTH: 'true',
      ANONYMOUS_PULL: 'false',
      REPOSITORY_ACCESS: 'public/*=public',
    });
    ({ work, host, http } = stack);
    const image = await makeImage(work, { hello: 'hello from an authenticated registry\n' });
    imageDigest = image.digest;
    layout = join(work, 'layout');
    await writeOciLayout(layout, 'v1', [image]);
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
  });

  it('challenges /v2/ and protected routes with the token realm and scope', async () => {
    const base = await http.get('/v2/').expect(401);
    expect(base.headers['www-authenticate']).toBe(`Bearer realm="http://${host}/v2/token",service="stratum"`);
    expect(base.body.errors[0].code).toBe('UNAUTHORIZED');
    const pull = await http.get('/v2/team/app/manifests/v1').expect(401);
    expect(pull.headers['www-authenticate']).toBe(
      `Bearer realm="http://${host}/v2/token",service="stratum",scope="repository:team/app:pull"`,
    );
    const upload = await http.post('/v2/team/app/blobs/uploads/').expect(401);
    expect(upload.headers['www-authenticate']).toContain('scope="repository:team/app:pull,push"');
  });

  it('an unauthorised push is a 401 with the challenge and leaves nothing behind', async () => {
    const blob = Buffer.from('bytes nobody may push');
    const mono = await http
      .post(`/v2/team/app/blobs/uploads/?digest=${sha(blob)}`)
      .set('Content-Type', 'application/octet-stream')
      .send(blob)
      .expect(401);
    expect(mono.headers['www-authenticate']).toBe(
      `Bearer realm="http://${host}/v2/token",service="stratum",scope="repository:team/app:pull,push"`,
    );
    // An anonymous token does not grant push either, and a forged one is refused.
    const anon = await http.get('/v2/token?service=stratum&scope=repository:team/app:pull,push').expect(200);
    const denied = await http
      .post(`/v2/team/app/blobs/uploads/?digest=${sha(blob)}`)
      .set('Authorization', `Bearer ${anon.body.token}`)
      .set('Content-Type', 'application/octet-stream')
      .send(blob)
      .expect(401);
    expect(denied.headers['www-authenticate']).toContain('error="insufficient_scope"');
    const [h, p] = (anon.body.token as string).split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ access: [{ type: 'repository', name: 'team/app', actions: ['push'] }] })).toString('base64url')}.${p}`;
    await http
      .put('/v2/team/app/manifests/v1')
      .set('Authorization', `Bearer ${forged}`)
      .send('{}')
      .expect(401);
    await http.put('/v2/team/app/manifests/v1').auth('alice', 'wrong').send('{}').expect(401);

    expect(await readdir(join(stack.dataDir, 'store', 'blobs', 'sha256')).catch(() => [])).toEqual([]);
    expect(await readdir(join(stack.dataDir, 'store', 'uploads')).catch(() => [])).toEqual([]);
    const token = await http
      .get('/v2/token?service=stratum&scope=registry:catalog:*')
      .auth('bob', 'plain-password');
    const catalog = await http
      .get('/v2/_catalog')
      .set('Authorization', `Bearer ${token.body.token}`)
      .expect(200);
    expect(catalog.body.repositories).toEqual([]);
  });

  it('the token endpoint refuses wrong credentials and scopes what it grants', async () => {
    await http.get('/v2/token?service=stratum').auth('alice', 'nope').expect(401);
    await http.get('/v2/token?service=other').auth('alice', 'wonderland').expect(400);
    const ok = await http
      .get('/v2/token?service=stratum&scope=repository:team/app:pull,push&scope=repository:x:delete')
      .auth('alice', 'wonderland')
      .expect(200);
    expect(ok.body.expires_in).toBe(300);
    expect(ok.body.access_token).toBe(ok.body.token);
    const claims = JSON.parse(Buffer.from((ok.body.token as string).split('.')[1], 'base64url').toString());
    expect(claims.sub).toBe('alice');
    expect(claims.access).toEqual([
      { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'x', actions: ['delete'] },
    ]);
    // An API token is a password too.
    await http.get('/v2/token?service=stratum').auth('anyone', API_TOKEN).expect(200);
  });

  it('skopeo pushes with --dest-creds; anonymous pull only where the repository is public', async () => {
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:wonderland',
      `oci:${layout}:v1`,
      `docker://${host}/team/app:v1`,
    );
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'bob:plain-password',
      `oci:${layout}:v1`,
      `docker://${host}/public/app:v1`,
    );
    const raw = await skopeo(
      'inspect',
      '--raw',
      '--tls-verify=false',
      '--creds',
      'bob:plain-password',
      `docker://${host}/team/app:v1`,
    );
    expect(sha(raw)).toBe(imageDigest);
    await expect(
      skopeo('inspect', '--raw', '--tls-verify=false', '--no-creds', `docker://${host}/team/app:v1`),
    ).rejects.toThrow(/unauthorized|authentication required/i);
    const anon = await skopeo(
      'inspect',
      '--raw',
      '--tls-verify=false',
      '--no-creds',
      `docker://${host}/public/app:v1`,
    );
    expect(sha(anon)).toBe(imageDigest);
    // curl-style Basic on a protected route works too.
    await http.head('/v2/team/app/manifests/v1').auth('alice', 'wonderland').expect(200);
  }, 120_000);

  it('a mount without `from` links a blob held where the asker may pull (bearer token)', async () => {
    const manifest = JSON.parse(
      (await http.get('/v2/team/app/manifests/v1').auth('alice', 'wonderland').expect(200)).text,
    ) as { layers: { digest: string }[] };
    const layer = manifest.layers[0].digest;
    const token = (
      await http
        .get('/v2/token?service=stratum&scope=repository:mounted/here:pull,push')
        .auth('bob', 'plain-password')
        .expect(200)
    ).body.token as string;
    await http
      .post(`/v2/mounted/here/blobs/uploads/?mount=${layer}`)
      .set('Authorization', `Bearer ${token}`)
      .expect(201);
    await http.head(`/v2/mounted/here/blobs/${layer}`).set('Authorization', `Bearer ${token}`).expect(200);
  });

  it('podman login + push, and podman pull with the stored login', async () => {
    const store = join(work, 'podman');
    const authfile = join(work, 'podman-auth.json');
    const podman = isolatedTool('podman', store);
    await expect(
      podman('login', '--tls-verify=false', '--authfile', authfile, '-u', 'alice', '-p', 'bad', host),
    ).rejects.toThrow();
    await podman(
      'login',
      '--tls-verify=false',
      '--authfile',
      authfile,
      '-u',
      'alice',
      '-p',
      'wonderland',
      host,
    );
    await podman('pull', '--tls-verify=false', '--authfile', authfile, `${host}/team/app:v1`);
    await podman('tag', `${host}/team/app:v1`, `${host}/podman/pushed:v2`);
    await podman('push', '--tls-verify=false', '--authfile', authfile, `${host}/podman/pushed:v2`);
    const head = await http.head('/v2/podman/pushed/manifests/v2').auth('alice', 'wonderland').expect(200);
    expect(head.headers['docker-content-digest']).toMatch(/^sha256:/);
    await podman('rmi', '-a', '-f');
  }, 300_000);

  it('buildah push of an image made from scratch', async () => {
    const store = join(work, 'buildah');
    const tool = isolatedTool('buildah', store);
    const buildah = async (...args: string[]): Promise<string> => (await tool(...args)).trim();
    const file = join(work, 'greeting.txt');
    await run('sh', ['-c', `echo 'made by buildah' > ${file}`]);
    const ctr = await buildah('from', 'scratch');
    await buildah('copy', ctr, file, '/greeting.txt');
    await buildah('config', '--cmd', '/greeting.txt', ctr);
    await buildah('commit', ctr, 'localhost/scratch-made:latest');
    await expect(
      buildah(
        'push',
        '--tls-verify=false',
        'localhost/scratch-made:latest',
        `docker://${host}/buildah/made:v1`,
      ),
    ).rejects.toThrow();
    await buildah(
      'push',
      '--tls-verify=false',
      '--creds',
      'bob:plain-password',
      'localhost/scratch-made:latest',
      `docker://${host}/buildah/made:v1`,
    );
    const inspected = JSON.parse(
      await skopeo(
        'inspect',
        '--tls-verify=false',
        '--creds',
        'bob:plain-password',
        `docker://${host}/buildah/made:v1`,
      ),
    ) as { Layers: string[] };
    expect(inspected.Layers).toHaveLength(1);
    await buildah('rm', '--all');
    await buildah('rmi', '--all', '--force');
  }, 300_000);

  it('API_AUTH: /api/v1 needs an API token; health stays open', async () => {
    const no = await http.get('/api/v1/images').expect(401);
    expect(no.body.code).toBe('UNAUTHORIZED');
    await http.get('/api/v1/images').set('Authorization', 'Bearer wrong-token-0123456789').expect(401);
    const ok = await http.get('/api/v1/images').set('Authorization', `Bearer ${API_TOKEN}`).expect(200);
    expect(Array.isArray(ok.body)).toBe(true);
  });
});
