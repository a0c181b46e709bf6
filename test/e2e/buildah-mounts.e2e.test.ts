// Every RUN --mount type and option, built through the CLI, the API and a real worker, beside
// Debian's buildah building the same Dockerfile (`--runtime /usr/sbin/runc --isolation oci`,
// secrets with `--secret id=..,src=..`): both images unpacked with umoci and compared path by
// path (type, mode, owner, link target, contents), whiteout by whiteout and config by config.
// Each step writes what it saw of its mounts (contents, owners, modes, sizes, writability) into
// the image, so "the same tree" means "the steps saw the same mounts and left the same layers".
//
// Where buildah 1.28 departs from BuildKit's documented semantics (the Dockerfile reference,
// RUN --mount), Stratum follows the reference and the test says so at the case:
// - buildah leaves the empty directories it made for a mount target's missing parents (/app of
//   target=/app/src, /opt, /run/secrets, /var/cache); BuildKit removes every mount stub it
//   made, parents included, and so do we: those paths may be only in buildah's image.
// - tmpfs `size=` is BuildKit's option; buildah 1.28 knows only `tmpfs-size=` (same meaning).
// - a relative mount target is below WORKDIR in BuildKit; buildah 1.28 refuses it (its copy says /w/rel).
// - from=<stage> (bind or cache): buildah 1.28 does not find the stage's files when the stage
//   itself was a cache hit ("couldn't find .../merged/seed"), so every case starts from an empty
//   buildah store.
// - cache sharing=private: unknown to buildah 1.28 (shared|locked); its copy says shared.
// - bind rw: buildah 1.28 writes through to the user's context directory; BuildKit discards writes.
// - secret `env=` (BuildKit's Dockerfile frontend 1.10) is unknown to buildah 1.28: its
//   Dockerfile reads the secret from a file into the variable instead.
//
// Then two concurrent builds on the worker (WORKER_CONCURRENCY=2) with sharing=locked on one
// cache id: their step intervals never overlap.
//
// Needs: `npm run build` (the worker and the CLI run compiled), buildah, umoci, runc.
import 'reflect-metadata';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import {
  BuildahStore,
  busyboxRootfs,
  comparableConfig,
  differences,
  layoutFromStore,
  mountsUnder,
  requireTools,
  runCli,
  tree,
  umociUnpack,
  whiteouts,
  writeTree,
} from '@stratum/testing';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(300_000);

let stack: StackHandle;
let work: string;
let buildah: BuildahStore;
let secretFile: string;
/** Cache ids unique to this run: buildah's and the worker's caches start empty. */
const RUN = `${process.pid}-${Date.now()}`;
const SECRET = 'tok-value-3c1f9a'; // no newline: env= hands the bytes over as they are

/** The stage every case starts from: busybox, plus files a bind from=, a cache seed and a delete use. */
const BASE = [
  'FROM scratch AS base',
  'ADD rootfs.tar /',
  'ENV PATH=/bin',
  'RUN mkdir -p /seed /data && echo seeded > /seed/s && echo staged > /data/v && echo gone > /data/gone',
  'FROM base',
];

interface Case {
  readonly name: string;
  /** Lines after {@link BASE}. */
  readonly lines: string[];
  readonly files?: Record<string, string>;
  /** Line replacements for buildah's copy of the Dockerfile (where it departs from the reference). */
  readonly forBuildah?: Record<string, string>;
  /** Paths only buildah's image may have (see the header). */
  readonly buildahOnly?: string[];
  /** Paths whose entries differ where buildah departs from the reference (said at the case). */
  readonly known?: string[];
}

const CASES: Case[] = [
  {
    name: 'bind',
    files: { 'src/a': 'A\n', 'src/sub/b': 'B\n' },
    lines: [
      // the context (default), read-only by default
      'RUN --mount=type=bind,target=/ctx sh -c "ls -R /ctx > /ctxls; touch /ctx/x 2>/dev/null && echo rw > /ro1 || echo ro > /ro1"',
      // source= a directory, rw: the step writes, the writes are thrown away
      'RUN --mount=type=bind,source=src,target=/app/src,rw sh -c "echo w > /app/src/a; cat /app/src/a /app/src/sub/b > /rw1"',
      'RUN --mount=type=bind,source=src,target=/app/src cat /app/src/a > /rw2',
      // source= a file
      'RUN --mount=type=bind,source=src/a,target=/a.txt cat /a.txt > /file1',
      // from= a stage, with a delete in the same step (a whiteout beside a mount)
      'RUN --mount=type=bind,from=base,source=/data,target=/m sh -c "cat /m/v > /from1; rm /data/gone"',
      // a relative target is below WORKDIR
      'WORKDIR /w',
      'RUN --mount=type=bind,source=src/sub,target=rel cat /w/rel/b > /rel1',
    ],
    // BuildKit resolves a relative target against WORKDIR; buildah 1.28 wants it absolute
    forBuildah: { 'target=rel ': 'target=/w/rel ' },
    buildahOnly: ['/app'],
    // buildah 1.28 binds the context itself for rw: the step's write lands in the user's context
    // directory and every later step sees it (/rw2, /file1 hold "w"). BuildKit: "Allow writes on
    // the mount. Written data will be discarded", so ours hold "A" (see the facts below).
    known: ['/rw2', '/file1'],
  },
  {
    name: 'cache',
    lines: [
      `RUN --mount=type=cache,id=c1-${RUN},target=/c,uid=1000,gid=100,mode=0750 sh -c "echo 1 >> /c/log; stat -c %u:%g:%a /c > /owner"`,
      // the same id (and the same uid/gid/mode: BuildKit keys a cache by them too) at another
      // target sees what the first wrote; ro cannot write
      `RUN --mount=type=cache,id=c1-${RUN},target=/c2,uid=1000,gid=100,mode=0750,ro sh -c "cat /c2/log > /shared1; touch /c2/x 2>/dev/null && echo rw > /ro1 || echo ro > /ro1"`,
      // from/source seed a new cache (what the step reads; that the seeded cache is writable and
      // kept is checked in run-mounts.test.ts)
      `RUN --mount=type=cache,id=seed-${RUN},from=base,source=/seed,target=/c3 cat /c3/s > /seeded`,
      `RUN --mount=type=cache,id=s-${RUN},target=/var/cache/s,sharing=shared sh -c "echo s > /var/cache/s/f; cat /var/cache/s/f > /sharing-shared"`,
      `RUN --mount=type=cache,id=p-${RUN},target=/var/cache/p,sharing=private sh -c "echo p > /var/cache/p/f; cat /var/cache/p/f > /sharing-private"`,
      `RUN --mount=type=cache,id=l-${RUN},target=/var/cache/l,sharing=locked sh -c "echo l > /var/cache/l/f; cat /var/cache/l/f > /sharing-locked"`,
      // no id: the target is the id; a new cache is an empty directory owned by root, 0755
      `RUN --mount=type=cache,target=/root/.cache-${RUN} sh -c "ls -A /root/.cache-${RUN} > /fresh; stat -c %u:%g:%a /root/.cache-${RUN} >> /fresh"`,
    ],
    // buildah 1.28 knows sharing=shared|locked only; alone on its id, private is one directory too
    forBuildah: { ',sharing=private ': ',sharing=shared ' },
    buildahOnly: ['/var', '/var/cache'],
  },
  {
    name: 'tmpfs',
    lines: [
      'RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c "df -k /scratch | tail -1 | awk \'{print \\$2}\' > /size; dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null && echo fits > /fill || echo full > /fill"',
      'RUN --mount=type=tmpfs,target=/scratch sh -c "echo x > /scratch/f && ls /scratch > /tmpfs2"',
    ],
    forBuildah: { ',size=1m ': ',tmpfs-size=1m ' },
  },
  {
    name: 'secret',
    lines: [
      // default target /run/secrets/<id>, 0400 root
      'RUN --mount=type=secret,id=tok sh -c "stat -c %a:%u:%g /run/secrets/tok > /s1; wc -c < /run/secrets/tok > /s1len"',
      'RUN --mount=type=secret,id=tok,target=/opt/t,mode=0440,uid=7,gid=8 stat -c %a:%u:%g /opt/t > /s2',
      'RUN --mount=type=secret,id=tok,required=true sh -c "sha256sum /run/secrets/tok | cut -c1-64 > /s3"',
      'RUN --mount=type=secret,id=tok,env=TOKEN sh -c "echo \\${#TOKEN} > /s4"',
      // a missing optional secret: nothing mounted, the step runs
      'RUN --mount=type=secret,id=absent sh -c "test -e /run/secrets/absent && echo present > /s5 || echo absent > /s5"',
    ],
    forBuildah: {
      'RUN --mount=type=secret,id=tok,env=TOKEN sh -c "echo \\${#TOKEN} > /s4"':
        'RUN --mount=type=secret,id=tok,target=/tok-env sh -c "TOKEN=\\$(cat /tok-env); echo \\${#TOKEN} > /s4"',
    },
    buildahOnly: ['/opt', '/run/secrets'],
  },
];

function contextOf(c: Case, forBuildah: boolean): string {
  let dockerfile = [...BASE, ...c.lines].join('\n') + '\n';
  if (forBuildah) {
    for (const [from, to] of Object.entries(c.forBuildah ?? {})) {
      expect(dockerfile).toContain(from); // a replacement that no longer applies is a stale test
      dockerfile = dockerfile.split(from).join(to);
    }
  }
  const dir = join(work, `${c.name}-${forBuildah ? 'buildah' : 'stratum'}`);
  writeTree({ Dockerfile: dockerfile, ...(c.files ?? {}) }, dir);
  writeFileSync(join(dir, 'rootfs.tar'), busyboxRootfs());
  return dir;
}

/** `stratum build DIR` as a user runs it (more flags in `args`); its output and the build's record. */
async function cliBuild(
  dir: string,
  tag: string,
  args: string[] = [],
): Promise<{ out: string; record: BuildRecord }> {
  const r = await runCli(['build', '-t', tag, ...args, dir], {
    url: stack.api.url,
    timeoutMs: 180_000,
    env: { STRATUM_NO_CONTEXT_CACHE: '1' },
  });
  const out = `exit ${String(r.code)}\n${r.stdout}\n${r.stderr}`;
  const m = /=> build ([0-9a-f-]{36})/.exec(r.stdout);
  if (m === null) {
    throw new Error(`no build id in:\n${out}`);
  }
  const record = (await request(stack.api.url).get(`/api/v1/builds/${m[1]}`)).body as BuildRecord;
  return { out, record };
}

/** {@link cliBuild} that must succeed (with the secret `tok`). */
async function stratumBuild(dir: string, tag: string, args: string[] = []): Promise<BuildRecord> {
  const { out, record } = await cliBuild(dir, tag, ['--secret', `id=tok,src=${secretFile}`, ...args]);
  expect({ state: record.state, error: record.error, out: record.state === 'succeeded' ? '' : out }).toEqual({
    state: 'succeeded',
    error: null,
    out: '',
  });
  return record;
}

beforeAll(async () => {
  requireTools('buildah', 'umoci', '/usr/sbin/runc', 'tar', 'find', 'sha256sum');
  work = mkdtempSync(join(tmpdir(), 'stratum-e2e-buildah-mounts-'));
  buildah = new BuildahStore(join(work, 'buildah'));
  secretFile = join(work, 'tok');
  writeFileSync(secretFile, SECRET, { mode: 0o600 });
  stack = await startStack({
    name: 'buildah-mounts',
    env: { WORKER_CONCURRENCY: '2', AUTH_SECRET: 'e2e-buildah-mounts-auth-secret-0123456789' },
  });
});

afterAll(async () => {
  await stack?.stop();
  buildah?.clean();
  if (work !== undefined) {
    expect(mountsUnder(work)).toEqual([]);
    rmSync(work, { recursive: true, force: true });
  }
});

describe('RUN --mount: Stratum vs buildah', () => {
  it.each(CASES.map((c) => [c.name, c] as const))(
    'type=%s: the same tree, whiteouts and config as buildah',
    async (_name, c) => {
      const rec = await stratumBuild(contextOf(c, false), `e2e/mounts-${c.name}:1`);
      buildah.clean();
      const bh = buildah.build(contextOf(c, true), `mounts-${c.name}`, [
        '--secret',
        `id=tok,src=${secretFile}`,
      ]);
      const oursLayout = join(work, 'oci', `${c.name}-stratum`);
      await layoutFromStore(join(stack.dataDir, 'store'), rec.imageDigest as string, oursLayout);
      const ours = await umociUnpack(oursLayout);
      const theirs = await umociUnpack(bh.layout);
      expect(comparableConfig(ours.config)).toEqual(comparableConfig(theirs.config));
      expect(
        differences(tree(ours.rootfs), tree(theirs.rootfs), {
          buildahOnly: c.buildahOnly ?? [],
          known: c.known ?? [],
        }),
      ).toEqual([]);
      expect(whiteouts(ours)).toEqual(whiteouts(theirs));
      // The secret's bytes are in neither (its length and hash are, by design of the case).
      for (const root of [ours.rootfs, theirs.rootfs]) {
        for (const [p, e] of tree(root)) {
          if (e.type === 'file' && e.sha !== undefined && !p.startsWith('/bin')) {
            expect(readFileSync(join(root, p)).includes(SECRET)).toBe(false);
          }
        }
      }
      // Sanity: the case did what it claims (a tree both got wrong would also "agree").
      const facts: Record<string, Record<string, string>> = {
        bind: { ro1: 'ro\n', rw1: 'w\nB\n', rw2: 'A\n', file1: 'A\n', from1: 'staged\n', rel1: 'B\n' },
        cache: {
          owner: '1000:100:750\n',
          shared1: '1\n',
          ro1: 'ro\n',
          seeded: 'seeded\n',
          fresh: '0:0:755\n',
        },
        tmpfs: { size: '1024\n', fill: 'full\n', tmpfs2: 'f\n' },
        secret: {
          s1: '400:0:0\n',
          s1len: `${SECRET.length}\n`,
          s2: '440:7:8\n',
          s4: `${SECRET.length}\n`,
          s5: 'absent\n',
        },
      };
      for (const [f, want] of Object.entries(facts[c.name])) {
        expect([f, readFileSync(join(ours.rootfs, f), 'utf8')]).toEqual([f, want]);
      }
      rmSync(ours.rootfs, { recursive: true, force: true });
      rmSync(theirs.rootfs, { recursive: true, force: true });
    },
  );

  it('a missing required secret: buildah refuses it too; ours names the id and the line', async () => {
    const c: Case = { name: 'required', lines: ['RUN --mount=type=secret,id=npm,required=true true'] };
    const dir = contextOf(c, false);
    expect(() => buildah.build(dir, 'mounts-required')).toThrow(/secret required but no secret with id npm/);
    const { out, record } = await cliBuild(dir, 'e2e/mounts-required:1');
    expect(record.state).toBe('failed');
    expect(record.error).toMatch(/secret "npm" is required/);
    expect(record.error).toMatch(/^Dockerfile:6: |on line 6: /);
    expect(out).toMatch(/^exit [1-9]/);
    expect(mountsUnder(stack.dataDir)).toEqual([]);
  });
});

describe('sharing=locked between two concurrent builds on the worker', () => {
  it('the step intervals of two builds on one cache id do not overlap', async () => {
    // Each build records its step's start and end (uptime, one clock for both) in the cache
    // itself and in its image; the other build's build-arg makes the two steps different
    // (no step-cache hit) while the cache id is the same.
    const dockerfile = [
      ...BASE,
      'ARG WHO',
      `RUN --mount=type=cache,id=lock-${RUN},target=/c,sharing=locked sh -c "s=\\$(cut -d' ' -f1 /proc/uptime); sleep 2; e=\\$(cut -d' ' -f1 /proc/uptime); echo \\$WHO \\$s \\$e >> /c/intervals; echo \\$s \\$e > /interval"`,
    ].join('\n');
    const dir = writeTree({ Dockerfile: dockerfile }, join(work, 'locked'));
    writeFileSync(join(dir, 'rootfs.tar'), busyboxRootfs());
    // Submitted at once; the worker runs two jobs at a time.
    const [a, b] = await Promise.all(
      ['a', 'b'].map((who) => stratumBuild(dir, `e2e/locked:${who}`, ['--build-arg', `WHO=${who}`])),
    );
    const interval = async (rec: BuildRecord): Promise<[number, number]> => {
      const layout = join(work, 'oci', `locked-${rec.id}`);
      await layoutFromStore(join(stack.dataDir, 'store'), rec.imageDigest as string, layout);
      const u = await umociUnpack(layout);
      const [s, e] = readFileSync(join(u.rootfs, 'interval'), 'utf8').trim().split(' ').map(Number);
      return [s, e];
    };
    const [[sa, ea], [sb, eb]] = [await interval(a), await interval(b)];
    expect(ea - sa).toBeGreaterThanOrEqual(2);
    expect(ea <= sb || eb <= sa).toBe(true);
    // ...while the two builds did run at once (else the check above could not fail).
    const t = (v: string | null): number => Date.parse(v ?? '');
    expect(t(a.startedAt) < t(b.finishedAt) && t(b.startedAt) < t(a.finishedAt)).toBe(true);
  });
});
