import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerdHandle, RedisServerHandle, startDockerd, startRedisServer } from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { makeImage, OciImageParts, run, skopeo, writeOciLayout } from './registry-fixtures';

// Docker Engine against Stratum: a private dockerd (vfs storage, no iptables/bridge, its own
// data/exec roots and socket; 127.0.0.0/8 is an insecure registry to it by default, and
// --insecure-registry names our port too) logs in through the token flow and pulls an image
// that skopeo pushed; `docker image inspect` shows its digest, layer and config.

const SECRET = 'docker-e2e-secret-0123456789abcdefghij';

describe('docker pull from Stratum (e2e, private dockerd)', () => {
  let redis: RedisServerHandle;
  let dataDir: string;
  let work: string;
  let api: ApiServerHandle;
  let host: string;
  let image: OciImageParts;
  let dockerd: DockerdHandle;
  let docker: (...args: string[]) => Promise<string>;

  beforeAll(async () => {
    redis = await startRedisServer();
    dataDir = await mkdtemp(join(tmpdir(), 'stratum-docker-e2e-'));
    work = await mkdtemp(join(tmpdir(), 'stratum-docker-work-'));
    api = await startApiServer(
      testConfig({
        REDIS_URL: redis.url,
        DATA_DIR: dataDir,
        REGISTRY_AUTH: 'token',
        AUTH_SECRET: SECRET,
        REGISTRY_USERS: 'dev:docker-password',
        ANONYMOUS_PULL: 'false',
      }),
    );
    host = api.url.replace('http://', '');
    image = await makeImage(work, { 'srv/hello.txt': 'pulled by docker\n' });
    await writeOciLayout(join(work, 'layout'), 'v1', [image]);
    await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'dev:docker-password',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${host}/team/hello:v1`,
    );

    dockerd = await startDockerd(host);
    docker = dockerd.docker;
  }, 120_000);

  afterAll(async () => {
    await dockerd?.stop();
    await api?.close();
    await redis?.stop();
    for (const dir of [dataDir, work]) {
      if (dir !== undefined) {
        await rm(dir, { recursive: true, force: true });
      }
    }
  }, 60_000);

  it('refuses an anonymous pull, logs in, pulls and inspects', async () => {
    await expect(docker('pull', `${host}/team/hello:v1`)).rejects.toThrow(
      /pull access denied|unauthorized|authentication required/i,
    );
    await expect(
      run('sh', [
        '-c',
        `echo wrong | DOCKER_CONFIG=${dockerd.clientConfig} docker -H ${dockerd.socket} login -u dev --password-stdin ${host}`,
      ]),
    ).rejects.toThrow();
    await run('sh', [
      '-c',
      `echo docker-password | DOCKER_CONFIG=${dockerd.clientConfig} docker -H ${dockerd.socket} login -u dev --password-stdin ${host}`,
    ]);
    const auth = JSON.parse(await readFile(join(dockerd.clientConfig, 'config.json'), 'utf8')) as {
      auths: Record<string, unknown>;
    };
    expect(Object.keys(auth.auths)).toContain(host);

    const out = await docker('pull', `${host}/team/hello:v1`);
    expect(out).toContain(`Digest: ${image.digest}`);
    const [inspected] = JSON.parse(await docker('image', 'inspect', `${host}/team/hello:v1`)) as {
      RepoDigests: string[];
      Architecture: string;
      Os: string;
      Config: { Cmd: string[] };
      RootFS: { Layers: string[] };
    }[];
    expect(inspected.RepoDigests).toEqual([`${host}/team/hello@${image.digest}`]);
    expect(inspected.Architecture).toBe('amd64');
    expect(inspected.Config.Cmd).toEqual(['/hello']);
    const config = JSON.parse(image.config.toString()) as { rootfs: { diff_ids: string[] } };
    expect(inspected.RootFS.Layers).toEqual(config.rootfs.diff_ids);
    // And by digest.
    await docker('pull', `${host}/team/hello@${image.digest}`);
    await docker('rmi', '-f', `${host}/team/hello:v1`);
  }, 180_000);
});
