// Multi-platform builds end to end, with real arm64: Debian's arm64 busybox-static as the base,
// qemu-aarch64 registered with the F flag (infra/setup-binfmt.sh), a real API and worker. One
// build for linux/amd64,linux/arm64 gives an OCI index with both entries; `skopeo copy
// --override-arch` of each, unpacked with umoci, holds what its RUN wrote (`uname -m`), and
// the cross-compile stage (FROM --platform=$BUILDPLATFORM) ran natively for both.
//
// Needs: `npm run build` (the worker runs compiled), skopeo, umoci, runc, qemu-user-static.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  busyboxArm64Rootfs,
  BuildahStore,
  busyboxRootfs,
  startDockerd,
  contextTar,
  ensureArm64Emulation,
  pollBuild,
  requireTools,
  runCli,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';
import { DistributionHandle, skopeo, startDistribution } from './registry-fixtures';

jest.setTimeout(600_000);

interface IndexDoc {
  mediaType: string;
  manifests: {
    digest: string;
    mediaType: string;
    size: number;
    platform: { os: string; architecture: string };
  }[];
}

describe('multi-platform builds (e2e, real arm64 through qemu)', () => {
  let stack: StackHandle;
  let host: string;
  let work: string;

  const http = (): ReturnType<typeof request> => request(stack.api.url);

  async function importBase(
    tar: Buffer,
    tag: string,
    platform: string,
  ): Promise<{ digest: string; size: number }> {
    const res = await http()
      .post(`/api/v1/images/import?repository=bb&tag=${tag}&platform=${platform}`)
      .set('content-type', 'application/x-tar')
      .send(tar);
    expect(res.status).toBe(201);
    const raw = await http()
      .get(`/v2/bb/manifests/${tag}`)
      .set('accept', 'application/vnd.oci.image.manifest.v1+json');
    return {
      digest: res.body.manifestDigest as string,
      size: Buffer.byteLength(raw.text ?? JSON.stringify(raw.body)),
    };
  }

  async function putIndex(
    tag: string,
    entries: { digest: string; size: number; arch: string }[],
  ): Promise<void> {
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: entries.map((e) => ({
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: e.digest,
        size: e.size,
        platform: { os: 'linux', architecture: e.arch },
      })),
    };
    const res = await http()
      .put(`/v2/bb/manifests/${tag}`)
      .set('content-type', 'application/vnd.oci.image.index.v1+json')
      .send(JSON.stringify(index));
    expect(res.status).toBe(201);
  }

  async function build(files: Record<string, string>, query: string): Promise<BuildRecord> {
    const res = await http()
      .post(`/api/v1/builds?${query}`)
      .set('content-type', 'application/x-tar')
      .send(await contextTar(files));
    expect(res.status).toBe(202);
    return pollBuild(stack.api.url, res.body.id as string, ['succeeded', 'failed', 'cancelled'], 300_000);
  }

  /**
   * `skopeo copy --override-arch` of our image to an OCI layout, unpacked with umoci: the rootfs
   * dir. Asynchronous: the API answering skopeo runs in this process.
   */
  async function unpack(ref: string, arch: string): Promise<string> {
    const dir = mkdtempSync(join(work, `${arch}-`));
    await skopeo(
      '--override-arch',
      arch,
      'copy',
      '--src-tls-verify=false',
      `docker://${host}/${ref}`,
      `oci:${dir}/layout:x`,
    );
    execFileSync('umoci', ['raw', 'unpack', '--rootless', '--image', `${dir}/layout:x`, `${dir}/rootfs`]);
    return join(dir, 'rootfs');
  }

  beforeAll(async () => {
    requireTools('skopeo', 'umoci', 'runc', 'dpkg-deb');
    ensureArm64Emulation();
    const arm64Tar = busyboxArm64Rootfs();
    work = mkdtempSync(join(tmpdir(), 'stratum-multiplatform-'));
    stack = await startStack({ name: 'multiplatform', env: { WORKER_CONCURRENCY: '2' } });
    host = stack.api.url.replace('http://', '');
    const amd = await importBase(busyboxRootfs(), 'amd64', 'linux/amd64');
    const arm = await importBase(arm64Tar, 'arm64', 'linux/arm64');
    await putIndex('multi', [
      { ...amd, arch: 'amd64' },
      { ...arm, arch: 'arm64' },
    ]);
    await putIndex('only-amd64', [{ ...amd, arch: 'amd64' }]);
  });

  afterAll(async () => {
    await stack?.stop();
    if (work !== undefined) {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('builds an index for linux/amd64 and linux/arm64; RUN runs arm64 through qemu; the BUILDPLATFORM stage runs natively', async () => {
    const dockerfile = [
      'FROM --platform=$BUILDPLATFORM bb:multi AS tool',
      'ARG TARGETARCH',
      'RUN uname -m > /build-m && echo "$TARGETARCH" > /for',
      'FROM bb:multi',
      'ARG TARGETPLATFORM',
      'ARG BUILDPLATFORM',
      'COPY --from=tool /build-m /for /',
      'RUN uname -m > /m && echo "$TARGETPLATFORM $BUILDPLATFORM" > /tp',
      '',
    ].join('\n');
    const rec = await build({ Dockerfile: dockerfile }, 't=app:1&platform=linux/amd64,linux/arm64');
    expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
    expect(rec.platforms).toEqual(['linux/amd64', 'linux/arm64']);
    expect(rec.steps.map((s) => s.name)).toContain(
      '[linux/arm64] [stage-1] RUN uname -m > /m && echo "$TARGETPLATFORM $BUILDPLATFORM" > /tp',
    );

    const raw = JSON.parse(
      await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/app:1`),
    ) as IndexDoc;
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`)).toEqual([
      'linux/amd64',
      'linux/arm64',
    ]);
    const head = await http()
      .head('/v2/app/manifests/1')
      .set('accept', 'application/vnd.oci.image.index.v1+json');
    expect(head.headers['docker-content-digest']).toBe(rec.imageDigest);

    const arm = await unpack('app:1', 'arm64');
    expect(readFileSync(join(arm, 'm'), 'utf8')).toBe('aarch64\n');
    expect(readFileSync(join(arm, 'build-m'), 'utf8')).toBe('x86_64\n');
    expect(readFileSync(join(arm, 'for'), 'utf8')).toBe('arm64\n');
    expect(readFileSync(join(arm, 'tp'), 'utf8')).toBe('linux/arm64 linux/amd64\n');
    const amd = await unpack('app:1', 'amd64');
    expect(readFileSync(join(amd, 'm'), 'utf8')).toBe('x86_64\n');
    expect(readFileSync(join(amd, 'build-m'), 'utf8')).toBe('x86_64\n');
    expect(readFileSync(join(amd, 'for'), 'utf8')).toBe('amd64\n');
    expect(readFileSync(join(amd, 'tp'), 'utf8')).toBe('linux/amd64 linux/amd64\n');

    // The images API and `docker images`-like list show the index with its platforms.
    const list = (await http().get('/api/v1/images')).body as {
      repository: string;
      tag: string;
      platforms?: string[];
    }[];
    expect(list.find((i) => i.repository === 'app' && i.tag === '1')?.platforms).toEqual([
      'linux/amd64',
      'linux/arm64',
    ]);
    const detail = (await http().get('/api/v1/images/app:1')).body as {
      index: string;
      architecture: string;
      platforms: { platform: string; manifestDigest: string }[];
    };
    expect(detail.index).toBe(rec.imageDigest);
    expect(detail.architecture).toBe('amd64');
    expect(detail.platforms.map((p) => p.platform)).toEqual(['linux/amd64', 'linux/arm64']);
    expect(detail.platforms.map((p) => p.manifestDigest)).toEqual(raw.manifests.map((m) => m.digest));

    const armConfig = JSON.parse(
      await skopeo(
        'inspect',
        '--tls-verify=false',
        '--override-arch',
        'arm64',
        '--config',
        `docker://${host}/app:1`,
      ),
    ) as { architecture: string; os: string };
    expect([armConfig.os, armConfig.architecture]).toEqual(['linux', 'arm64']);
  });

  it('a second build of the same platforms is cached per platform', async () => {
    const dockerfile = 'FROM bb:multi\nRUN uname -m > /m2\n';
    const first = await build({ Dockerfile: dockerfile }, 't=app:2&platform=linux/amd64,linux/arm64');
    expect(first.state).toBe('succeeded');
    const again = await build({ Dockerfile: dockerfile }, 't=app:3&platform=linux/arm64,linux/amd64');
    expect(again.state).toBe('succeeded');
    const runs = again.steps.filter((s) => s.name.includes('RUN uname'));
    expect(runs.map((s) => s.status)).toEqual(['cached', 'cached']);
    expect(readFileSync(join(await unpack('app:3', 'arm64'), 'm2'), 'utf8')).toBe('aarch64\n');
  });

  it('one platform gives a plain image of that platform; FROM scratch carries it in the config', async () => {
    const rec = await build(
      { Dockerfile: 'FROM scratch\nCOPY a /a\n', a: 'x' },
      't=solo:1&platform=linux/arm64',
    );
    expect(rec.state).toBe('succeeded');
    const cfg = JSON.parse(
      await skopeo(
        'inspect',
        '--tls-verify=false',
        '--config',
        '--override-arch',
        'arm64',
        `docker://${host}/solo:1`,
      ),
    ) as { architecture: string };
    expect(cfg.architecture).toBe('arm64');
    const raw = JSON.parse(
      await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/solo:1`),
    ) as {
      mediaType: string;
    };
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });

  it('refuses an unknown platform (400) and one no worker runs (422, named); FROM of an index without the platform fails with the line', async () => {
    const bad = await http()
      .post('/api/v1/builds?t=x:1&platform=linux/sparc')
      .set('content-type', 'application/x-tar')
      .send(await contextTar({ Dockerfile: 'FROM scratch\n' }));
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/unknown architecture "sparc"/);
    const none = await http()
      .post('/api/v1/builds?t=x:1&platform=linux/amd64,linux/s390x')
      .set('content-type', 'application/x-tar')
      .send(await contextTar({ Dockerfile: 'FROM scratch\n' }));
    expect(none.status).toBe(422);
    expect(none.body.code).toBe('PLATFORM_UNAVAILABLE');
    expect(none.body.message).toMatch(/no worker can build for linux\/s390x/);
    const rec = await build(
      { Dockerfile: 'FROM scratch\nFROM bb:only-amd64\nRUN true\n' },
      't=x:2&platform=linux/arm64',
    );
    expect(rec.state).toBe('failed');
    expect(rec.error).toMatch(
      /^linux\/arm64: Dockerfile:2: .*has no image for linux\/arm64 \(it has linux\/amd64\)/,
    );
  });

  it('push=true copies the index whole to another registry (every platform, then the index)', async () => {
    const dist: DistributionHandle = await startDistribution();
    try {
      const rec = await build(
        { Dockerfile: 'FROM bb:multi\nRUN uname -m > /m\n' },
        `t=pushed:1&t=${dist.host}/team/multi:1&push=true&platform=linux/amd64,linux/arm64`,
      );
      expect(rec.state).toBe('succeeded');
      let push: { state: string; error?: string | null } = { state: 'queued' };
      for (let i = 0; i < 300 && !['succeeded', 'failed'].includes(push.state); i++) {
        await new Promise((r) => setTimeout(r, 200));
        push = (await http().get(`/api/v1/pushes/${rec.pushId}`)).body as typeof push;
      }
      expect(push.state).toBe('succeeded');
      const theirs = JSON.parse(
        await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${dist.host}/team/multi:1`),
      ) as IndexDoc;
      expect(theirs.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
      const digestThere = (
        await skopeo(
          'inspect',
          '--tls-verify=false',
          '--format',
          '{{.Digest}}',
          `docker://${dist.host}/team/multi:1`,
        )
      ).trim();
      expect(digestThere).toBe(rec.imageDigest);
      const armThere = JSON.parse(
        await skopeo(
          'inspect',
          '--tls-verify=false',
          '--override-arch',
          'arm64',
          '--config',
          `docker://${dist.host}/team/multi:1`,
        ),
      ) as { architecture: string };
      expect(armThere.architecture).toBe('arm64');
    } finally {
      await dist.stop();
    }
  });

  it('Buildah builds the same two-platform image: the trees match per platform (timings: Stratum vs Buildah, native vs qemu)', async () => {
    requireTools('buildah');
    const files: Record<string, string> = {};
    for (let i = 0; i < 50; i++) {
      files[`ctx/f${i}.txt`] = `file ${i}\n`.repeat(100);
    }
    const dockerfile = (from: string): string =>
      [
        `FROM ${from}`,
        'COPY ctx/ /ctx/',
        'RUN for i in $(seq 1 300); do echo $i > /tmp/f$i; done && tar -cf /files.tar -C /tmp . && uname -m > /m && sha256sum /ctx/* > /sums && head -c 67108864 /dev/zero | sha256sum > /zsum',
        '',
      ].join('\n');
    const ctxDir = mkdtempSync(join(work, 'bench-ctx-'));
    execFileSync('mkdir', ['-p', join(ctxDir, 'ctx')]);
    for (const [p, c] of Object.entries(files)) {
      execFileSync('sh', ['-c', 'cat > "$1"', 'sh', join(ctxDir, p)], { input: c });
    }
    execFileSync('sh', ['-c', 'cat > "$1"', 'sh', join(ctxDir, 'Dockerfile')], {
      input: dockerfile(`${host}/bb:multi`),
    });

    const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
      const t0 = Date.now();
      const r = await f();
      return [r, (Date.now() - t0) / 1000];
    };
    const stratum = async (tag: string, platforms: string): Promise<number> => {
      const [rec, secs] = await timed(() =>
        build(
          { ...files, Dockerfile: dockerfile('bb:multi') },
          `t=${tag}&nocache=true&platform=${platforms}`,
        ),
      );
      expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
      return secs;
    };
    const store = join(work, 'buildah');
    const globals = [
      '--root',
      join(store, 'root'),
      '--runroot',
      join(store, 'runroot'),
      '--storage-driver',
      'overlay',
    ];
    const buildah = async (name: string, platforms: string): Promise<number> => {
      const [, secs] = await timed(() =>
        promisify(execFile)(
          'buildah',
          [
            ...globals,
            'build',
            '--platform',
            platforms,
            '--manifest',
            name,
            '--runtime',
            '/usr/sbin/runc',
            '--isolation',
            'oci',
            '--tls-verify=false',
            ctxDir,
          ],
          { maxBuffer: 1 << 26, env: { ...process.env, TMPDIR: work } },
        ),
      );
      return secs;
    };
    try {
      const t = {
        stratumBoth: await stratum('bench-s:both', 'linux/amd64,linux/arm64'),
        buildahBoth: await buildah('bench-b-both', 'linux/amd64,linux/arm64'),
        stratumAmd64: await stratum('bench-s:amd64', 'linux/amd64'),
        buildahAmd64: await buildah('bench-b-amd64', 'linux/amd64'),
        stratumArm64: await stratum('bench-s:arm64', 'linux/arm64'),
        buildahArm64: await buildah('bench-b-arm64', 'linux/arm64'),
      };
      console.log(
        [
          'two-platform bench (one run, cold: nocache / no --layers):',
          `  linux/amd64+linux/arm64: Stratum ${t.stratumBoth.toFixed(2)} s, Buildah ${t.buildahBoth.toFixed(2)} s`,
          `  linux/amd64 only (native): Stratum ${t.stratumAmd64.toFixed(2)} s, Buildah ${t.buildahAmd64.toFixed(2)} s`,
          `  linux/arm64 only (qemu):   Stratum ${t.stratumArm64.toFixed(2)} s, Buildah ${t.buildahArm64.toFixed(2)} s`,
        ].join('\n'),
      );
      await promisify(execFile)('buildah', [
        ...globals,
        'manifest',
        'push',
        '--all',
        '--tls-verify=false',
        'bench-b-both',
        `docker://${host}/bench-b:both`,
      ]);
      for (const arch of ['amd64', 'arm64']) {
        const ours = await unpack('bench-s:both', arch);
        const theirs = await unpack('bench-b:both', arch);
        for (const f of ['m', 'sums', 'zsum']) {
          expect({
            arch,
            f,
            same: readFileSync(join(ours, f)).equals(readFileSync(join(theirs, f))),
          }).toEqual({
            arch,
            f,
            same: true,
          });
        }
        expect(readFileSync(join(ours, 'm'), 'utf8')).toBe(arch === 'arm64' ? 'aarch64\n' : 'x86_64\n');
        expect(execFileSync('ls', [join(ours, 'tmp')]).toString()).toBe(
          execFileSync('ls', [join(theirs, 'tmp')]).toString(),
        );
      }
    } finally {
      new BuildahStore(store).clean();
    }
  });

  it('Docker Engine pulls the arm64 image of the index with --platform linux/arm64', async () => {
    requireTools('dockerd', 'docker');
    const dockerd = await startDockerd(host);
    try {
      await dockerd.docker('pull', '--platform', 'linux/arm64', `${host}/app:1`);
      const arch = (
        await dockerd.docker('image', 'inspect', '--format', '{{.Os}}/{{.Architecture}}', `${host}/app:1`)
      ).trim();
      expect(arch).toBe('linux/arm64');
    } finally {
      await dockerd.stop();
    }
  });

  it('the CLI takes --platform as buildx does', async () => {
    const dir = mkdtempSync(join(work, 'cli-'));
    execFileSync('sh', ['-c', `printf 'FROM bb:multi\\nRUN uname -m > /m\\n' > ${dir}/Dockerfile`]);
    const r = await runCli(['build', '-t', 'cli:1', '--platform', 'linux/arm64,linux/amd64', dir], {
      url: stack.api.url,
      timeoutMs: 300_000,
    });
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: '' });
    expect(r.stdout).toMatch(/\[linux\/arm64\] \[stage-0\] RUN uname -m/);
    const raw = JSON.parse(
      await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/cli:1`),
    ) as IndexDoc;
    expect(raw.manifests.map((m) => m.platform.architecture)).toEqual(['arm64', 'amd64']);
    const bad = await runCli(['build', '-t', 'cli:2', '--platform', 'linux/nope', dir], {
      url: stack.api.url,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown architecture "nope"/);
  });
});
