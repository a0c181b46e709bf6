// ADD of git sources and named build contexts (issue 16 items 2 and 3), through the CLI, with
// the results read back by `--output type=local`.
// - ADD <git url>: a local bare repository over file:// (allowed here by ADD_GIT_SCHEMES=file;
//   off by default): `#ref:subdir`, `--keep-git-dir`, `--checksum=<commit>` (a mismatch fails
//   with the line), keyed by the resolved commit (a moved branch rebuilds, an unchanged one is
//   cached). Debian's buildah 1.28 has no ADD of git repositories: this follows the Dockerfile
//   reference ("Adding files from a Git repository").
// - Submodules, as BuildKit's git source checks them out (`git submodule update --init
//   --recursive --depth=1`): nested, relative URLs resolved against the parent's URL (file:// and
//   git smart HTTP), `.git` files dropped unless --keep-git-dir; a transport the policy does not
//   list is refused by name.
// - ADD --unpack=true of a URL (a local HTTP server): the archive is unpacked; without the flag
//   it is copied as a file (Dockerfile reference, ADD --unpack).
// - --build-context name=oci-layout://DIR[:tag|@digest] (a layout skopeo wrote from our registry):
//   the CLI uploads the image it names, FROM name uses it; a missing layout, an unknown tag and
//   an index without the build's platform fail with what is missing (buildx's semantics).
// - --build-context name=DIR|docker-image://REF|GIT URL|http(s) tarball: `FROM name` and
//   `COPY --from=name` use it, as buildx. The directory case is compared with buildah 1.28's
//   own --build-context. One named like a stage replaces that stage (buildx docs: "When
//   Dockerfile defines a stage with the same name it is overwritten").
//
// Needs: `npm run build` (worker and CLI run compiled), git, buildah, runc.
import 'reflect-metadata';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create as createTar } from 'tar';
import {
  busyboxContext,
  CliResult,
  fileTreeSummary,
  gitHttpBackend,
  requireTools,
  runCli,
  GitSubmoduleLink,
  makeBareRepo,
  runGit,
  writeTree,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(300_000);

let stack: StackHandle;
let work: string;
let bare: string;
let repoWork: string;
let server: Server;
let httpUrl: string;
const sha: Record<string, string> = {};

const git = (cwd: string, ...args: string[]): string => runGit(work, cwd, ...args);
const execFileP = promisify(execFile);

const makeRepo = (name: string, files: Record<string, string>, subs: GitSubmoduleLink[] = []): string =>
  makeBareRepo(work, work, name, files, subs);

function stratum(args: string[]): Promise<CliResult> {
  return runCli(args, { url: stack.api.url, timeoutMs: 180_000 });
}

/** Builds `dockerfileBody` on busybox with `args`, unpacked into a fresh directory (type=local). */
async function buildOut(
  name: string,
  dockerfileBody: string,
  args: string[] = [],
): Promise<{ res: CliResult; out: string }> {
  const ctx = writeTree(busyboxContext(dockerfileBody), join(work, `ctx-${name}`));
  const out = join(work, `out-${name}`);
  const res = await stratum(['build', ...args, '--output', `type=local,dest=${out}`, ctx]);
  return { res, out };
}

beforeAll(async () => {
  requireTools('git', 'buildah', '/usr/sbin/runc');
  work = mkdtempSync(join(tmpdir(), 'stratum-e2e-sources-'));
  repoWork = join(work, 'repo-work');
  bare = join(work, 'repo.git');
  mkdirSync(join(repoWork, 'sub'), { recursive: true });
  git(repoWork, 'init', '--quiet', '-b', 'main', '.');
  writeFileSync(join(repoWork, 'a.txt'), 'one\n');
  writeFileSync(join(repoWork, 'sub', 'b.txt'), 'bee\n');
  git(repoWork, 'add', '.');
  git(repoWork, 'commit', '--quiet', '-m', 'one');
  sha.one = git(repoWork, 'rev-parse', 'HEAD');
  git(repoWork, 'tag', '-a', 'v1', '-m', 'v1');
  writeFileSync(join(repoWork, 'a.txt'), 'two\n');
  git(repoWork, 'commit', '--quiet', '-am', 'two');
  sha.two = git(repoWork, 'rev-parse', 'HEAD');
  git(work, 'clone', '--quiet', '--bare', repoWork, bare);
  git(repoWork, 'remote', 'add', 'origin', bare);

  // Submodules: app has lib (relative URL, next to app.git), lib has inner (relative too).
  sha.inner = makeRepo('inner', { 'inner.txt': 'inner\n' });
  sha.lib = makeRepo('lib', { 'lib.txt': 'lib\n' }, [
    { name: 'inner', path: 'inner', url: '../inner.git', commit: sha.inner },
  ]);
  makeRepo('app', { 'app.txt': 'app\n' }, [
    { name: 'lib', path: 'vendor/lib', url: '../lib.git', commit: sha.lib },
  ]);
  makeRepo('evil', { 'x.txt': 'x\n' }, [
    { name: 'pwn', path: 'pwn', url: 'ext::sh -c touch% /tmp/stratum-pwned', commit: sha.inner },
  ]);

  // A tarball (and a plain file) over HTTP, for ADD --unpack and an http named context.
  const tarball = join(work, 'ctx.tar.gz');
  writeTree({ 't.txt': 'from the tarball\n', 'd/e.txt': 'deep\n' }, join(work, 'tarball-src'));
  await createTar({ gzip: true, file: tarball, cwd: join(work, 'tarball-src'), portable: true }, [
    't.txt',
    'd',
  ]);
  server = createServer((req, res) => {
    if (req.url?.startsWith('/git/') === true) {
      gitHttpBackend(work, req, res);
      return;
    }
    if (req.url === '/ctx.tar.gz') {
      res.writeHead(200, { 'content-type': 'application/gzip' });
      res.end(readFileSync(tarball));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  httpUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  stack = await startStack({ name: 'sources', env: { ADD_GIT_SCHEMES: 'https,ssh,file,http' } });
});

afterAll(async () => {
  await stack?.stop();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  if (work !== undefined) {
    rmSync(work, { recursive: true, force: true });
  }
});

describe('ADD <git url>', () => {
  it('copies a ref, a subdir of a tag, without .git; --keep-git-dir keeps it at the commit', async () => {
    const url = `file://${bare}`;
    const { res, out } = await buildOut(
      'git',
      [
        `ADD ${url}#main /whole`,
        `ADD ${url}#v1:sub /only-sub/`,
        `ADD --keep-git-dir=true ${url}#v1 /kept`,
        '',
      ].join('\n'),
    );
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`commit ${sha.two}`);
    expect(readFileSync(join(out, 'whole/a.txt'), 'utf8')).toBe('two\n');
    expect(readFileSync(join(out, 'whole/sub/b.txt'), 'utf8')).toBe('bee\n');
    expect(existsSync(join(out, 'whole/.git'))).toBe(false);
    expect(readdirSync(join(out, 'only-sub'))).toEqual(['b.txt']);
    expect(readFileSync(join(out, 'kept/a.txt'), 'utf8')).toBe('one\n');
    expect(git(join(out, 'kept'), '-c', `safe.directory=*`, 'rev-parse', 'HEAD')).toBe(sha.one);
  });

  it('--checksum=<commit> passes when it matches and fails with the line when not', async () => {
    const url = `file://${bare}`;
    const ok = await buildOut('sum-ok', `ADD --checksum=${sha.two.slice(0, 12)} ${url}#main /c\n`);
    expect(ok.res.code).toBe(0);
    const bad = await buildOut('sum-bad', `ADD --checksum=${sha.one} ${url}#main /c\n`);
    expect(bad.res.code).toBe(1);
    expect(bad.res.stderr).toMatch(/line 4|Dockerfile:4/);
    expect(bad.res.stderr).toContain(`expected checksum to match ${sha.one}, got ${sha.two}`);
  });

  it('is cached by the resolved commit: the same commit is reused, a moved branch rebuilds', async () => {
    const body = `ADD file://${bare}#main /m\nRUN cat /m/a.txt\n`;
    const first = await buildOut('cache-1', body);
    expect(first.res.code).toBe(0);
    const again = await buildOut('cache-2', body);
    expect(again.res.stdout).toMatch(/ADD file:\/\/\S+#main \/m\n#\d+ CACHED/);
    writeFileSync(join(repoWork, 'a.txt'), 'three\n');
    git(repoWork, 'commit', '--quiet', '-am', 'three');
    git(repoWork, 'push', '--quiet', 'origin', 'main');
    const moved = await buildOut('cache-3', body);
    expect(moved.res.code).toBe(0);
    expect(moved.res.stdout).not.toMatch(/ADD file:\/\/\S+#main \/m\n#\d+ CACHED/);
    expect(readFileSync(join(moved.out, 'm/a.txt'), 'utf8')).toBe('three\n');
  });

  it('over git smart HTTP (a local git http-backend): an http(s) URL ending in .git is a repository', async () => {
    const { res, out } = await buildOut('git-http', `ADD ${httpUrl}/git/repo.git#v1:sub /h/\n`);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(readdirSync(join(out, 'h'))).toEqual(['b.txt']);
  });

  it('checks out submodules, nested, at their pinned commits; .git files only with --keep-git-dir', async () => {
    const { res, out } = await buildOut(
      'submodules',
      [
        `ADD file://${work}/app.git#main /app`,
        // Over git smart HTTP: the relative URLs resolve against the parent's http:// URL.
        `ADD ${httpUrl}/git/app.git /http-app`,
        `ADD --keep-git-dir=true file://${work}/app.git /kept`,
        '',
      ].join('\n'),
    );
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    for (const root of ['app', 'http-app', 'kept']) {
      expect(readFileSync(join(out, root, 'app.txt'), 'utf8')).toBe('app\n');
      expect(readFileSync(join(out, root, 'vendor/lib/lib.txt'), 'utf8')).toBe('lib\n');
      expect(readFileSync(join(out, root, 'vendor/lib/inner/inner.txt'), 'utf8')).toBe('inner\n');
    }
    expect(existsSync(join(out, 'app/.git'))).toBe(false);
    expect(existsSync(join(out, 'app/vendor/lib/.git'))).toBe(false);
    expect(existsSync(join(out, 'app/vendor/lib/inner/.git'))).toBe(false);
    // git's own layout: the submodules' repositories in the parent's .git/modules.
    expect(readFileSync(join(out, 'kept/vendor/lib/.git'), 'utf8')).toMatch(
      /^gitdir: (\.\.\/)+\.git\/modules\/lib\n/,
    );
    expect(git(join(out, 'kept/vendor/lib/inner'), '-c', 'safe.directory=*', 'rev-parse', 'HEAD')).toBe(
      sha.inner,
    );
  });

  it('a submodule URL whose transport ADD_GIT_SCHEMES does not list fails, naming it', async () => {
    const { res } = await buildOut('evil-sub', `ADD file://${work}/evil.git /x\n`);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(
      'submodule "pwn" (ext::sh -c touch% /tmp/stratum-pwned): the ext transport is not allowed here (ADD_GIT_SCHEMES=https,ssh,file,http)',
    );
    expect(res.stderr).toMatch(/line 4|Dockerfile:4/);
  });

  it('an unknown ref fails naming it', async () => {
    const { res } = await buildOut('noref', `ADD file://${bare}#nope /x\n`);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/no branch or tag "nope"/);
  });
});

it('ADD --unpack=true unpacks a remote archive; without it the URL is copied as a file', async () => {
  const { res, out } = await buildOut(
    'unpack',
    `ADD --unpack=true ${httpUrl}/ctx.tar.gz /unpacked/\nADD ${httpUrl}/ctx.tar.gz /plain/\n`,
  );
  expect(res.code).toBe(0);
  expect(readFileSync(join(out, 'unpacked/t.txt'), 'utf8')).toBe('from the tarball\n');
  expect(readFileSync(join(out, 'unpacked/d/e.txt'), 'utf8')).toBe('deep\n');
  expect(readdirSync(join(out, 'plain'))).toEqual(['ctx.tar.gz']);
});

describe('--build-context', () => {
  it('a directory (its .dockerignore honoured) for COPY --from, as buildah --build-context gives it', async () => {
    const dir = writeTree(
      {
        'hello.txt': 'hi from a named dir\n',
        'nested/x.txt': 'x\n',
        'secret.txt': 'no\n',
        '.dockerignore': 'secret.txt\n',
      },
      join(work, 'named-dir'),
    );
    const { res, out } = await buildOut('named-dir', 'COPY --from=mydir / /ctx/\n', [
      '--build-context',
      `mydir=${dir}`,
    ]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(readFileSync(join(out, 'ctx/hello.txt'), 'utf8')).toBe('hi from a named dir\n');
    expect(existsSync(join(out, 'ctx/secret.txt'))).toBe(false);

    // buildah, same directory without the ignored file, FROM scratch: the same tree.
    rmSync(join(dir, 'secret.txt'));
    rmSync(join(dir, '.dockerignore'));
    const ctx = writeTree(
      { Dockerfile: 'FROM scratch\nCOPY --from=mydir / /ctx/\n' },
      join(work, 'buildah-ctx'),
    );
    const ours = join(work, 'ours-scratch');
    const mine = await stratum([
      'build',
      '--build-context',
      `mydir=${dir}`,
      '--output',
      `type=local,dest=${ours}`,
      ctx,
    ]);
    expect(mine.code).toBe(0);
    const theirs = join(work, 'buildah-out');
    execFileSync(
      'buildah',
      [
        '--root',
        join(work, 'bh/root'),
        '--runroot',
        join(work, 'bh/runroot'),
        '--storage-driver',
        'overlay',
        'build',
        '--build-context',
        `mydir=${dir}`,
        '--output',
        `type=local,dest=${theirs}`,
        ctx,
      ],
      { stdio: 'pipe' },
    );
    expect([...fileTreeSummary(ours)].sort()).toEqual([...fileTreeSummary(theirs)].sort());
  });

  it('docker-image://REF stands in for FROM name', async () => {
    const base = writeTree(busyboxContext('RUN echo base > /base.txt\n'), join(work, 'base-img'));
    expect((await stratum(['build', '-t', 'named/base:1', base])).code).toBe(0);
    const ctx = writeTree(
      { Dockerfile: 'FROM alpine\nRUN cat /base.txt > /seen.txt\n' },
      join(work, 'img-ctx'),
    );
    const out = join(work, 'out-img');
    const res = await stratum([
      'build',
      '--build-context',
      'alpine=docker-image://named/base:1',
      '--output',
      `type=local,dest=${out}`,
      ctx,
    ]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('named context alpine: image named/base:1');
    expect(readFileSync(join(out, 'seen.txt'), 'utf8')).toBe('base\n');
  });

  it('a git URL and an http tarball, for COPY --from and FROM', async () => {
    const { res, out } = await buildOut(
      'named-git',
      'COPY --from=src b.txt /from-git.txt\nCOPY --from=tb /t.txt /from-tarball.txt\n',
      ['--build-context', `src=file://${bare}#v1:sub`, '--build-context', `tb=${httpUrl}/ctx.tar.gz`],
    );
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(readFileSync(join(out, 'from-git.txt'), 'utf8')).toBe('bee\n');
    expect(readFileSync(join(out, 'from-tarball.txt'), 'utf8')).toBe('from the tarball\n');
    const ctx = writeTree({ Dockerfile: 'FROM src\n' }, join(work, 'from-git'));
    const out2 = join(work, 'out-from-git');
    const res2 = await stratum([
      'build',
      '--build-context',
      `src=file://${bare}#v1`,
      '--output',
      `type=local,dest=${out2}`,
      ctx,
    ]);
    expect(res2.code).toBe(0);
    expect(readFileSync(join(out2, 'a.txt'), 'utf8')).toBe('one\n');
  });

  it('oci-layout://DIR:tag (skopeo copy of an image of ours): FROM name uses the image the CLI uploads', async () => {
    const src = writeTree(busyboxContext('RUN echo from-layout > /layout.txt\n'), join(work, 'layout-src'));
    expect((await stratum(['build', '-t', 'layout/src:1', src])).code).toBe(0);
    const layout = join(work, 'layout');
    // Async: the API answering skopeo runs in this process.
    await execFileP('skopeo', [
      'copy',
      '--src-tls-verify=false',
      `docker://${new URL(stack.api.url).host}/layout/src:1`,
      `oci:${layout}:v1`,
    ]);
    // An index naming that image for linux/amd64 (tag multi) and one naming it for arm64 only.
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
      manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
    };
    const image = index.manifests[0];
    const addIndex = (tag: string, arch: string): void => {
      const body = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: image.mediaType,
            digest: image.digest,
            size: image.size,
            platform: { os: 'linux', architecture: arch },
          },
        ],
      });
      const hex = createHash('sha256').update(body).digest('hex');
      writeFileSync(join(layout, 'blobs/sha256', hex), body);
      index.manifests.push({
        mediaType: 'application/vnd.oci.image.index.v1+json',
        digest: `sha256:${hex}`,
        size: Buffer.byteLength(body),
        annotations: { 'org.opencontainers.image.ref.name': tag },
      });
    };
    addIndex('multi', 'amd64');
    addIndex('arm-only', 'arm64');
    writeFileSync(join(layout, 'index.json'), JSON.stringify(index));

    const ctx = writeTree(
      { Dockerfile: 'FROM base\nRUN cat /layout.txt > /seen.txt\n' },
      join(work, 'layout-ctx'),
    );
    const build = (spec: string, out: string, extra: string[] = []): Promise<CliResult> =>
      stratum(['build', '--build-context', spec, ...extra, '--output', `type=local,dest=${out}`, ctx]);

    const byTag = await build(`base=oci-layout://${layout}:v1`, join(work, 'out-layout'));
    expect(byTag.stderr).toBe('');
    expect(byTag.code).toBe(0);
    expect(byTag.stdout).toContain(`named context base: OCI layout image ${image.digest}`);
    expect(readFileSync(join(work, 'out-layout/seen.txt'), 'utf8')).toBe('from-layout\n');
    // An index: the build's platform is taken from it (here the worker's, linux/amd64).
    const byIndex = await build(`base=oci-layout://${layout}:multi`, join(work, 'out-layout-multi'));
    expect(byIndex.code).toBe(0);
    expect(readFileSync(join(work, 'out-layout-multi/seen.txt'), 'utf8')).toBe('from-layout\n');
    // By digest, as buildx's @sha256:… form.
    const byDigest = await build(`base=oci-layout://${layout}@${image.digest}`, join(work, 'out-layout-d'));
    expect(byDigest.code).toBe(0);

    const noTag = await build(`base=oci-layout://${layout}:nope`, join(work, 'out-x'));
    expect(noTag.code).toBe(2);
    expect(noTag.stderr).toContain('the tag "nope" is not in index.json (it has v1, multi, arm-only)');
    // No image for the build's platform: the CLI says so for --platform, the worker without it.
    const cliSide = await build(`base=oci-layout://${layout}:multi`, join(work, 'out-x'), [
      '--platform',
      'linux/arm64',
    ]);
    expect(cliSide.code).toBe(2);
    expect(cliSide.stderr).toMatch(
      /has no image for the build's platform linux\/arm64 \(it has linux\/amd64\)/,
    );
    const workerSide = await build(`base=oci-layout://${layout}:arm-only`, join(work, 'out-x'));
    expect(workerSide.code).toBe(1);
    expect(workerSide.stderr).toMatch(
      /has no image for the build's platform linux\/amd64 \(it has linux\/arm64\)/,
    );
  });

  it('a named context named like a stage replaces that stage, whose steps do not run (buildx: "it is overwritten")', async () => {
    const dir = writeTree({ 'hello.txt': 'from the named dir\n' }, join(work, 'stage-dir'));
    // The stage would fail if it ran (scratch has no shell), and would leave no hello.txt.
    const ctx = writeTree(
      {
        Dockerfile:
          'FROM scratch AS deps\nRUN exit 1\nFROM scratch\nCOPY --from=deps /hello.txt /from-deps.txt\n',
      },
      join(work, 'stage-ctx'),
    );
    const out = join(work, 'out-stage');
    const res = await stratum([
      'build',
      '--build-context',
      `deps=${dir}`,
      '--output',
      `type=local,dest=${out}`,
      ctx,
    ]);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('stage deps (line 1): replaced by the named context');
    expect(readFileSync(join(out, 'from-deps.txt'), 'utf8')).toBe('from the named dir\n');
    // Without the context the stage runs (and fails at its RUN): the override is what passed.
    const plain = await stratum(['build', '--output', `type=local,dest=${out}-plain`, ctx]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/line 2|Dockerfile:2/);
  });

  it('bad values are refused by the API before the build (exit 2)', async () => {
    const ctx = writeTree({ Dockerfile: 'FROM scratch\n' }, join(work, 'bad-ctx'));
    for (const [spec, msg] of [
      ['x=/nonexistent/dir', /not a directory/],
      ['x=oci-layout:///nonexistent/layout', /no OCI image layout there \(no oci-layout file\)/],
      ['x=target:other', /no bake targets/],
      ['Bad Name=docker-image://a', /not a context name/],
      ['x=git://host/repo#--upload-pack=x', /not a valid ref/],
    ] as const) {
      const res = await stratum(['build', '--build-context', spec, ctx]);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(msg);
    }
  });
});
