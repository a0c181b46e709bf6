// Bad input through the real API, table-driven: each case is refused with a 4xx and a message
// naming the problem, leaving no blob and no build record; a context whose entries only
// misbehave when the worker extracts them fails its build with a clear error and touches
// nothing outside the worker's dirs. Prints a summary table.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Redis } from 'ioredis';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { RedisKeys } from '@stratum/jobs';
import {
  contextTar,
  RedisServerHandle,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { filesUnder, overlayMountsUnder, sleep, submitBuild, waitForBuild } from './chaos-support';

jest.setTimeout(240_000);

const MAX_CONTEXT_BYTES = 4 * 1024 * 1024;
const SECRET = 'a-chaos-auth-secret-of-at-least-32-chars';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

let redisServer: RedisServerHandle;
let redis: Redis;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle;
let outside: string;
const sentinelContent = `sentinel ${randomBytes(8).toString('hex')}\n`;

function env(): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'chaos-bad-input',
    WORKER_CONCURRENCY: '2',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    MAX_CONTEXT_BYTES: String(MAX_CONTEXT_BYTES),
    JOB_ATTEMPTS: '1',
    REGISTRY_AUTH: 'token',
    AUTH_SECRET: SECRET,
    REGISTRY_USERS: 'chaos:chaos-password',
    ANONYMOUS_PULL: 'true',
  };
}

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Entry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'chr' | 'blk' | 'fifo';
  data?: string;
  link?: string;
}

/** A tar with exactly these entries (names kept as given: ../, absolute, links), by Python's tarfile. */
function rawTar(entries: Entry[]): Buffer {
  const script = `
import io, json, sys, tarfile
entries = json.load(sys.stdin)
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w', format=tarfile.GNU_FORMAT) as t:
    for e in entries:
        i = tarfile.TarInfo(e['name'])
        kind = e.get('type', 'file')
        data = e.get('data', '').encode()
        i.mode = 0o755 if kind == 'dir' else 0o644
        i.type = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE,
                  'hardlink': tarfile.LNKTYPE, 'chr': tarfile.CHRTYPE, 'blk': tarfile.BLKTYPE,
                  'fifo': tarfile.FIFOTYPE}[kind]
        if kind in ('symlink', 'hardlink'):
            i.linkname = e['link']
        if kind in ('chr', 'blk'):
            i.devmajor, i.devminor = 1, 3
        if kind == 'file':
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
        else:
            t.addfile(i)
sys.stdout.buffer.write(out.getvalue())
`;
  return execFileSync('python3', ['-c', script], { input: JSON.stringify(entries), maxBuffer: 64 << 20 });
}

const DF = { name: 'Dockerfile', data: 'FROM scratch\nCOPY . /\n' };

interface Outcome {
  status: number;
  message: string;
  /** Where the refusal came from: the API, or the build (worker) when the API accepted it. */
  via: 'api' | 'build';
}

interface Case {
  group: string;
  name: string;
  run: () => Promise<Outcome>;
  /** What the message must say. */
  message: RegExp;
  /** Statuses allowed (default: any 4xx). */
  status?: number[];
  /** A context the API may accept: then its build must fail with `message`. */
  mayBuild?: boolean;
  /** The build may also succeed, the entry confined to the build's root (checked: nothing escaped). */
  confined?: boolean;
  /** A known divergence, reported in the table but not failing the suite. */
  known?: string;
}

function bodyMessage(res: request.Response): string {
  const b = res.body as { message?: unknown; errors?: { code?: string; message?: string }[] };
  if (Array.isArray(b?.errors)) {
    return b.errors.map((e) => `${e.code ?? ''} ${e.message ?? ''}`).join('; ');
  }
  const m = b?.message;
  return `${(b as { code?: string })?.code ?? ''} ${Array.isArray(m) ? m.join('; ') : typeof m === 'string' ? m : res.text}`;
}

/** Submits a build context; when accepted (202) follows the build to its end. */
async function context(body: Buffer, query: Record<string, string> = {}): Promise<Outcome> {
  const res = await submitBuild(api.url, body, query);
  if (res.status !== 202) {
    return { status: res.status, message: bodyMessage(res), via: 'api' };
  }
  const rec: BuildRecord = await waitForBuild(
    api.url,
    (res.body as { id: string }).id,
    ['succeeded', 'failed'],
    90_000,
  );
  return {
    status: rec.state === 'failed' ? 422 : 202,
    message: `${rec.state}: ${rec.error ?? ''}`,
    via: 'build',
  };
}

const dockerfile = (text: string): Promise<Outcome> =>
  contextTar({ Dockerfile: text }).then((b) => context(b));

let token = '';
const v2 = (): request.Agent => request.agent(api.url).set('Authorization', `Bearer ${token}`);
async function v2Outcome(p: Promise<request.Response> | request.Test): Promise<Outcome> {
  const res = await p;
  return { status: res.status, message: bodyMessage(res), via: 'api' };
}

/**
 * A PUT by plain node:http that reads the answer even when the server stops reading the body
 * early (supertest reports only the ECONNRESET then).
 */
function rawPut(path: string, contentType: string, body: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = httpRequest(new URL(path, api.url), {
      method: 'PUT',
      headers: {
        'content-type': contentType,
        'content-length': body.length,
        authorization: `Bearer ${token}`,
      },
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let message = text;
        try {
          const j = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
          message = (j.errors ?? []).map((e) => `${e.code ?? ''} ${e.message ?? ''}`).join('; ');
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode ?? 0, message, via: 'api' });
      });
    });
    req.on('error', (err) => resolve({ status: 0, message: `no answer: ${err.message}`, via: 'api' }));
    req.end(body);
  });
}

function manifestWith(over: Record<string, unknown>): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha('{}'), size: 2 },
    layers: [],
    ...over,
  });
}

function cases(): Case[] {
  const ctx = (group: string, name: string, entries: Entry[], message: RegExp, confined = false): Case => ({
    group,
    name,
    run: () => context(rawTar([DF, ...entries])),
    message,
    mayBuild: true,
    confined,
  });
  const escape = /\.\.|outside|escape|absolute|link|path|unsafe|invalid/i;
  const out: Case[] = [
    // hostile context tars
    ctx('context', '../ traversal', [{ name: '../chaos-up', data: 'x' }], escape),
    ctx('context', '../../ deep traversal', [{ name: 'a/../../../chaos-up', data: 'x' }], escape),
    // like tar, the extractor reads "/tmp/x" as "tmp/x" and a symlink to "/" as the build's root
    ctx('context', 'absolute path', [{ name: '/tmp/chaos-abs', data: 'x' }], escape, true),
    ctx(
      'context',
      'symlink to / then a file through it',
      [
        { name: 'esc', type: 'symlink', link: '/' },
        { name: 'esc/tmp/chaos-through', data: 'x' },
      ],
      escape,
      true,
    ),
    ctx(
      'context',
      'symlink ../.. then a file through it',
      [
        { name: 'up', type: 'symlink', link: '../../../../..' },
        { name: 'up/tmp/chaos-through2', data: 'x' },
      ],
      escape,
    ),
    ctx(
      'context',
      'hard link to /etc/passwd',
      [{ name: 'pw', type: 'hardlink', link: '/etc/passwd' }],
      escape,
    ),
    ctx('context', 'hard link to ../outside', [{ name: 'o', type: 'hardlink', link: '../sentinel' }], escape),
    ctx('context', 'char device', [{ name: 'null', type: 'chr' }], /device/),
    ctx('context', 'block device', [{ name: 'disk', type: 'blk' }], /device/),
    {
      group: 'context',
      name: 'gzip bomb beyond MAX_CONTEXT_BYTES',
      run: () => context(gzipSync(rawTar([DF, { name: 'big', data: '0'.repeat(MAX_CONTEXT_BYTES * 2) }]))),
      message: /too large|MAX_CONTEXT_BYTES|exceed|limit/i,
      mayBuild: true,
    },
    {
      group: 'context',
      name: 'plain context beyond MAX_CONTEXT_BYTES',
      run: () => context(rawTar([DF, { name: 'big', data: '0'.repeat(MAX_CONTEXT_BYTES + 1) }])),
      message: /CONTEXT_TOO_LARGE/,
      status: [413],
    },
    {
      group: 'context',
      name: 'empty body',
      run: () => context(Buffer.alloc(0)),
      message: /CONTEXT_MISSING/,
      status: [400],
    },
    {
      group: 'context',
      name: 'not a tar',
      run: () => context(Buffer.from('not a tar at all\n'.repeat(64))),
      message: /tar/i,
      status: [400],
    },
    {
      group: 'context',
      name: 'truncated tar',
      run: () => context(rawTar([DF, { name: 'f', data: 'y'.repeat(5000) }]).subarray(0, 1500)),
      message: /tar|truncat|end/i,
      mayBuild: true,
    },
    {
      group: 'context',
      name: 'corrupt gzip CRC',
      run: () => {
        const gz = gzipSync(rawTar([DF]));
        gz[gz.length - 8] ^= 0xff;
        return context(gz);
      },
      message: /gzip|check|corrupt|invalid|tar/i,
      mayBuild: true,
    },
    {
      group: 'context',
      name: 'no Dockerfile',
      run: () => context(rawTar([{ name: 'README', data: 'x' }])),
      message: /DOCKERFILE_MISSING/,
      status: [400],
    },
    {
      group: 'context',
      name: 'dockerfile=../x',
      run: () => context(rawTar([DF]), { dockerfile: '../x' }),
      message: /dockerfile/,
      status: [400],
    },
    {
      group: 'context',
      name: 'dockerfile=/etc/passwd',
      run: () => context(rawTar([DF]), { dockerfile: '/etc/passwd' }),
      message: /dockerfile/i,
      status: [400],
    },
    {
      group: 'context',
      name: 'buildargs not JSON',
      run: () => context(rawTar([DF]), { buildargs: '{nope' }),
      message: /buildargs/,
      status: [400],
    },
    {
      group: 'context',
      name: 'buildargs with a number',
      run: () => context(rawTar([DF]), { buildargs: '{"A":1}' }),
      message: /buildargs/,
      status: [400],
    },
    {
      group: 'context',
      name: 'SOURCE_DATE_EPOCH not a number',
      run: () => context(rawTar([DF]), { buildargs: '{"SOURCE_DATE_EPOCH":"yesterday"}' }),
      message: /SOURCE_DATE_EPOCH/,
      mayBuild: true,
    },
  ];
  // tags and repository names: path tricks
  for (const t of [
    '../x:1',
    'a//b:1',
    '%2e%2e/x:1',
    'Upper/Case:1',
    'x:bad tag',
    'x:' + 'a'.repeat(200),
    '/abs:1',
    'a/./b:1',
  ]) {
    out.push({
      group: 'tag',
      name: `t=${t.length > 30 ? `${t.slice(0, 27)}...` : t}`,
      run: () => context(rawTar([DF]), { t }),
      message: /\bt\b|tag|invalid|name/i,
      status: [400],
    });
  }
  // malformed Dockerfiles: refused by the build, naming the line
  const dfCases: [string, string, RegExp][] = [
    ['unknown instruction', 'FROM scratch\nFROBNICATE x\n', /line 2/],
    ['no FROM', 'RUN true\n', /line 1|FROM/],
    ['empty Dockerfile', '', /empty|FROM|no instructions/i],
    ['FROM without image', 'FROM\n', /line 1/],
    ['COPY without dest', 'FROM scratch\nCOPY a\n', /line 2/],
    ['bad JSON form of CMD is shell form, fine; bad ENV', 'FROM scratch\nENV\n', /line 2/],
    ['unterminated heredoc', 'FROM scratch\nRUN <<EOF\necho\n', /line 2|heredoc|EOF/i],
    ['unknown flag', 'FROM scratch\nCOPY --bogus=1 a /a\n', /line 2/],
    ['bad stage reference', 'FROM scratch\nCOPY --from=nostage /a /a\n', /line 2|nostage/],
    ['bad escape directive', '# escape=xx\nFROM scratch\n', /escape|line 1/],
    ['WORKDIR without a path', 'FROM scratch\nWORKDIR\n', /line 2/],
    ['MAINTAINER without a name', 'FROM scratch\nMAINTAINER\n', /line 2/],
    ['COPY of a missing file', 'FROM scratch\nCOPY missing /m\n', /line 2|missing/],
    ['HEALTHCHECK bad interval', 'FROM scratch\nHEALTHCHECK --interval=banana CMD true\n', /line 2/],
  ];
  for (const [name, text, message] of dfCases) {
    out.push({ group: 'dockerfile', name, run: () => dockerfile(text), message, mayBuild: true });
  }
  out.push({
    group: 'dockerfile',
    name: 'EXPOSE of a non-port',
    run: () => dockerfile('FROM scratch\nEXPOSE notaport\n'),
    message: /line 2/,
    mayBuild: true,
    known: 'BuildKit refuses "invalid containerPort"; Stratum builds it',
  });
  // the registry (/v2) with REGISTRY_AUTH=token
  const blob = Buffer.from('chaos blob bytes');
  out.push(
    {
      group: 'auth',
      name: 'push without a token',
      run: () => v2Outcome(request(api.url).post('/v2/chaos/app/blobs/uploads/')),
      message: /UNAUTHORIZED/,
      status: [401],
    },
    {
      group: 'auth',
      name: 'push with a forged token',
      run: () =>
        v2Outcome(
          request(api.url).post('/v2/chaos/app/blobs/uploads/').set('Authorization', 'Bearer abc.def.ghi'),
        ),
      message: /UNAUTHORIZED|token/i,
      status: [401],
    },
    {
      group: 'auth',
      name: 'token endpoint, wrong password',
      run: () => v2Outcome(request(api.url).get('/v2/token?service=stratum').auth('chaos', 'wrong')),
      message: /UNAUTHORIZED|credentials|password/i,
      status: [401],
    },
    {
      group: 'auth',
      name: 'token endpoint, wrong service',
      run: () => v2Outcome(request(api.url).get('/v2/token?service=other').auth('chaos', 'chaos-password')),
      message: /service/i,
      status: [400],
    },
    {
      group: 'auth',
      name: 'token for another repository',
      run: async () => {
        const res = await request(api.url)
          .get('/v2/token?service=stratum&scope=repository:other/repo:pull,push')
          .auth('chaos', 'chaos-password');
        const t = (res.body as { token: string }).token;
        return v2Outcome(
          request(api.url).post('/v2/chaos/app/blobs/uploads/').set('Authorization', `Bearer ${t}`),
        );
      },
      message: /UNAUTHORIZED|DENIED|scope|access/i,
      status: [401, 403],
    },
    {
      group: 'registry',
      name: 'monolithic upload, digest mismatch',
      run: () =>
        v2Outcome(
          v2()
            .post(`/v2/chaos/app/blobs/uploads/?digest=${sha('other')}`)
            .set('Content-Type', 'application/octet-stream')
            .send(blob),
        ),
      message: /DIGEST_INVALID/,
      status: [400],
    },
    {
      group: 'registry',
      name: 'malformed digest',
      run: () =>
        v2Outcome(
          v2()
            .post('/v2/chaos/app/blobs/uploads/?digest=sha256:zz')
            .set('Content-Type', 'application/octet-stream')
            .send(blob),
        ),
      message: /DIGEST_INVALID/,
      status: [400],
    },
    {
      group: 'registry',
      name: 'truncated upload (Content-Length larger than body)',
      run: async () => {
        const start = await v2().post('/v2/chaos/app/blobs/uploads/');
        const loc = String(start.headers.location);
        return v2Outcome(
          v2()
            .put(`${loc}${loc.includes('?') ? '&' : '?'}digest=${sha(Buffer.concat([blob, blob]))}`)
            .set('Content-Type', 'application/octet-stream')
            .send(blob),
        );
      },
      message: /DIGEST_INVALID|SIZE_INVALID|BLOB_UPLOAD_INVALID/,
      status: [400, 416],
    },
    {
      group: 'registry',
      name: 'manifest not JSON',
      run: () =>
        v2Outcome(v2().put('/v2/chaos/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send('{oops')),
      message: /MANIFEST_INVALID/,
      status: [400],
    },
    {
      group: 'registry',
      name: 'manifest wrong schemaVersion',
      run: () =>
        v2Outcome(
          v2()
            .put('/v2/chaos/app/manifests/v1')
            .set('Content-Type', OCI_MANIFEST)
            .send(manifestWith({ schemaVersion: 1 })),
        ),
      message: /MANIFEST_INVALID|UNSUPPORTED/,
      status: [400, 415],
    },
    {
      group: 'registry',
      name: 'manifest naming a missing blob',
      run: () =>
        v2Outcome(
          v2().put('/v2/chaos/app/manifests/v1').set('Content-Type', OCI_MANIFEST).send(manifestWith({})),
        ),
      message: /MANIFEST_BLOB_UNKNOWN/,
      status: [400],
    },
    {
      group: 'registry',
      name: 'manifest layers not an array',
      run: () =>
        v2Outcome(
          v2()
            .put('/v2/chaos/app/manifests/v1')
            .set('Content-Type', OCI_MANIFEST)
            .send(manifestWith({ layers: 'x' })),
        ),
      message: /MANIFEST_INVALID/,
      status: [400],
    },
    {
      group: 'registry',
      name: 'manifest PUT by a digest it does not have',
      run: () =>
        v2Outcome(
          v2()
            .put(`/v2/chaos/app/manifests/${sha('not this')}`)
            .set('Content-Type', OCI_MANIFEST)
            .send(manifestWith({})),
        ),
      message: /DIGEST_INVALID|MANIFEST_BLOB_UNKNOWN|MANIFEST_INVALID/,
      status: [400],
    },
    {
      group: 'registry',
      name: 'oversized manifest (5 MiB)',
      run: () =>
        rawPut(
          '/v2/chaos/app/manifests/big',
          OCI_MANIFEST,
          Buffer.from(manifestWith({ annotations: { a: 'x'.repeat(5 * 1024 * 1024) } })),
        ),
      message: /MANIFEST_INVALID|SIZE_INVALID|too large/i,
      status: [413],
    },
  );
  for (const name of ['..%2fx', 'a//b', '%2e%2e/x', 'Upper/case', 'a/./b', '-x/y']) {
    out.push({
      group: 'registry',
      name: `repository "${name}"`,
      run: () => v2Outcome(request(api.url).get(`/v2/${name}/tags/list`)),
      message: /NAME_INVALID|NAME_UNKNOWN/,
      status: [400, 404],
    });
  }
  return out;
}

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-bad-'));
  outside = mkdtempSync(join(tmpdir(), 'stratum-chaos-outside-'));
  writeFileSync(join(outside, 'sentinel'), sentinelContent);
  api = await startApiServer(testConfig(env()));
  worker = await startWorkerProcess(env(), 60_000);
  const res = await request(api.url)
    .get('/v2/token?service=stratum&scope=repository:chaos/app:pull,push')
    .auth('chaos', 'chaos-password');
  expect(res.status).toBe(200);
  token = (res.body as { token: string }).token;
});

afterAll(async () => {
  await worker?.stop(10_000);
  await api?.close();
  redis?.disconnect();
  await redisServer?.stop();
  rmSync(outside, { recursive: true, force: true });
  if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it('refuses bad input with a 4xx naming the problem and leaves nothing behind', async () => {
  const table = cases();
  expect(table.length).toBeGreaterThanOrEqual(50);
  const rows: string[] = [];
  const problems: string[] = [];
  const known: string[] = [];
  const blobs = (): string[] => filesUnder(join(dataDir, 'store', 'blobs')).sort();
  for (const c of table) {
    const blobsBefore = blobs();
    const buildsBefore = await redis.zcard(RedisKeys.buildIndex);
    let o: Outcome;
    try {
      o = await c.run();
    } catch (err) {
      o = { status: 0, message: `threw: ${(err as Error).message}`, via: 'api' };
    }
    const ok4xx =
      o.status >= 400 && o.status < 500 && (c.status === undefined || c.status.includes(o.status));
    const okMessage = c.message.test(o.message);
    let leftover = '';
    if (o.via === 'api') {
      await sleep(100);
      const newBlobs = blobs().filter((b) => !blobsBefore.includes(b));
      const builds = (await redis.zcard(RedisKeys.buildIndex)) - buildsBefore;
      if (newBlobs.length > 0 || builds > 0) {
        leftover = `${newBlobs.length} new blob(s), ${builds} build record(s)`;
      }
    }
    const viaOk = o.via === 'api' || c.mayBuild === true;
    const confinedOk = c.confined === true && o.via === 'build' && o.status === 202;
    const pass = ((ok4xx && okMessage) || confinedOk) && leftover === '' && viaOk;
    const mark = pass ? (confinedOk ? 'conf' : 'ok  ') : c.known !== undefined ? 'KNWN' : 'FAIL';
    rows.push(
      `${mark} | ${c.group.padEnd(10)} | ${c.name.slice(0, 48).padEnd(48)} | ${o.via.padEnd(5)} | ${String(o.status).padEnd(3)} | ${o.message.replace(/\s+/g, ' ').slice(0, 90)}${leftover ? ` | LEFT ${leftover}` : ''}`,
    );
    if (!pass && c.known !== undefined) {
      known.push(`${c.group}/${c.name}: ${c.known}`);
    } else if (!pass) {
      problems.push(`${c.group}/${c.name}: ${o.via} ${o.status} "${o.message}" ${leftover}`);
    }
  }
  // nothing escaped the worker's dirs
  expect(readFileSync(join(outside, 'sentinel'), 'utf8')).toBe(sentinelContent);
  const escaped = [
    '/tmp/chaos-abs',
    '/tmp/chaos-through',
    '/tmp/chaos-through2',
    join(dataDir, '..', 'chaos-up'),
  ].filter((p) => {
    try {
      readFileSync(p);
      return true;
    } catch {
      return false;
    }
  });
  const refused = rows.filter((r) => r.startsWith('ok')).length;
  const confined = rows.filter((r) => r.startsWith('conf')).length;
  process.stdout.write(
    `chaos bad-input: ${table.length} cases: ${refused} refused as expected, ${confined} confined to the build root, ` +
      `${known.length} known divergence(s), ${problems.length} problem(s)\n${rows.join('\n')}\n` +
      (known.length > 0 ? `KNOWN:\n  ${known.join('\n  ')}\n` : '') +
      (problems.length > 0 ? `PROBLEMS:\n  ${problems.join('\n  ')}\n` : ''),
  );
  expect(escaped).toEqual([]);
  expect(problems).toEqual([]);
});
