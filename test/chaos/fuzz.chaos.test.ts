// Property-based fuzzing of the two parsers that read untrusted input on a worker: the
// Dockerfile parser and the layer (tar) reader. Seeded, so a failure replays.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { DockerfileError, parseDockerfile } from '@stratum/dockerfile';
import { applyLayer, LayerError } from '@stratum/layers';

jest.setTimeout(120_000);

const SEED = Number(process.env.CHAOS_SEED ?? 20240611);
const FULL = process.env.CHAOS_FULL === '1';
const summary: string[] = [];

afterAll(() => {
  process.stdout.write(`chaos fuzz (seed ${SEED}):\n${summary.map((s) => `  ${s}`).join('\n')}\n`);
});

describe('parseDockerfile', () => {
  const keyword = fc.constantFrom(
    'FROM',
    'RUN',
    'COPY',
    'ADD',
    'ENV',
    'ARG',
    'WORKDIR',
    'USER',
    'CMD',
    'ENTRYPOINT',
    'LABEL',
    'EXPOSE',
    'VOLUME',
    'SHELL',
    'HEALTHCHECK',
    'ONBUILD',
    'STOPSIGNAL',
    'MAINTAINER',
    'from',
    'BOGUS',
  );
  const token = fc.oneof(
    fc.constantFrom(
      '\\',
      '\\\n',
      '\n',
      ' ',
      '\t',
      '"',
      "'",
      '[',
      ']',
      ',',
      '$',
      '${',
      '}',
      ':-',
      ':+',
      '#',
      '# escape=`',
      '# syntax=docker/dockerfile:1',
      '`',
      '<<EOF',
      '<<-EOF',
      'EOF',
      '--mount=type=cache,target=/x',
      '--from=0',
      '--chown=1:1',
      '--network=none',
      '--link',
      '=',
      'AS',
      'a',
      'scratch',
      '\r\n',
      '\u0000',
      '\uFEFF',
      'é',
    ),
    fc.string({ maxLength: 12 }),
  );
  const line = fc.tuple(keyword, fc.array(token, { maxLength: 12 })).map(([k, ts]) => `${k} ${ts.join('')}`);
  const dockerfileLike = fc
    .tuple(fc.boolean(), fc.array(line, { maxLength: 20 }))
    .map(([from, ls]) => (from ? 'FROM scratch\n' : '') + ls.join('\n'));
  const anyText = fc.oneof(
    dockerfileLike,
    fc.string({ maxLength: 400 }),
    fc.string({ unit: 'binary', maxLength: 400 }),
  );

  it('throws nothing but DockerfileError, quickly', () => {
    let runs = 0;
    let refused = 0;
    let slowest = 0;
    fc.assert(
      fc.property(anyText, (text) => {
        runs++;
        const t0 = performance.now();
        try {
          parseDockerfile(text);
        } catch (err) {
          if (!(err instanceof DockerfileError)) {
            throw new Error(`parseDockerfile threw ${String(err)} for ${JSON.stringify(text)}`, {
              cause: err,
            });
          }
          refused++;
        }
        const ms = performance.now() - t0;
        slowest = Math.max(slowest, ms);
        if (ms > 500) {
          throw new Error(`parseDockerfile took ${ms.toFixed(0)} ms on ${JSON.stringify(text)}`);
        }
      }),
      { seed: SEED, numRuns: FULL ? 20_000 : 3000 },
    );
    summary.push(
      `parseDockerfile: ${runs} inputs, ${refused} refused with DockerfileError, slowest ${slowest.toFixed(1)} ms`,
    );
  });

  it('stays linear on long pathological inputs', () => {
    for (const text of [
      'RUN ' + 'a\\\n'.repeat(50_000),
      'FROM scratch\n' + 'ENV A=${'.repeat(20_000),
      'RUN <<EOF\n' + 'x\n'.repeat(100_000),
      '#'.repeat(200_000),
      'RUN ["' + '\\"'.repeat(50_000) + '"]',
      'FROM scratch\n' + 'LABEL ' + 'a="b" '.repeat(30_000),
    ]) {
      const t0 = performance.now();
      try {
        parseDockerfile(text);
      } catch (err) {
        expect(err).toBeInstanceOf(DockerfileError);
      }
      expect(performance.now() - t0).toBeLessThan(5000);
    }
  });
});

/** An error of node:zlib (a corrupt or truncated gzip stream): `Z_DATA_ERROR`, `Z_BUF_ERROR`… */

describe('applyLayer', () => {
  let base: string;
  let escapeTag: string;
  let validTars: Buffer[];

  /** A tar made by GNU tar from a small tree with every entry type a layer has. */
  function makeTar(dir: string, opts: { hostile: boolean }): Buffer {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'd', 'e'), { recursive: true });
    writeFileSync(join(src, 'd', 'f'), 'file f\n');
    writeFileSync(join(src, 'd', 'e', 'g'), Buffer.alloc(3000, 7));
    writeFileSync(join(src, '.wh.gone'), '');
    execFileSync('ln', ['-s', 'd/f', join(src, 'link')]);
    execFileSync('ln', [join(src, 'd', 'f'), join(src, 'hard')]);
    const args = ['-C', src, '-cf', '-', '.'];
    if (opts.hostile) {
      // names that leave the target: ../ traversal and an absolute path (GNU tar keeps them with -P)
      writeFileSync(join(dir, `${escapeTag}-up`), 'escape\n');
      args.push('-P', '--transform', `s|^${dir}/|../|`, join(dir, `${escapeTag}-up`));
    }
    return execFileSync('tar', args, { maxBuffer: 64 * 1024 * 1024 });
  }

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'stratum-chaos-fuzz-'));
    escapeTag = `chaos-escape-${process.pid}`;
    const work = mkdtempSync(join(base, 'mk-'));
    const plain = makeTar(work, { hostile: false });
    const work2 = mkdtempSync(join(base, 'mk-'));
    const hostile = makeTar(work2, { hostile: true });
    rmSync(work, { recursive: true, force: true });
    rmSync(work2, { recursive: true, force: true });
    validTars = [plain, hostile, gzipSync(plain), gzipSync(hostile)];
    writeFileSync(join(base, 'sentinel'), 'untouched\n');
  });

  afterAll(() => {
    rmSync(base, { recursive: true, force: true });
  });

  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    // flip some bytes
    fc.record({
      kind: fc.constant('flip' as const),
      edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 16 }),
    }),
    // cut it short
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    // overwrite a header field (name, mode, size, typeflag, linkname) of some 512-byte block
    fc.record({
      kind: fc.constant('header' as const),
      block: fc.nat({ max: 40 }),
      field: fc.constantFrom([0, 100], [100, 8], [124, 12], [156, 1], [157, 100], [345, 155]),
      text: fc.oneof(
        fc.constantFrom(
          '../../x',
          '/etc/chaos',
          'link/../../y',
          '\u0000',
          '777777777777',
          '9',
          '2',
          '1',
          '5',
          'L',
          'x',
          'g',
        ),
        fc.string({ maxLength: 20 }),
      ),
    }),
    // random bytes
    fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 3000 }) }),
  );

  type Mutation =
    | { kind: 'flip'; edits: [number, number][] }
    | { kind: 'truncate'; at: number }
    | { kind: 'header'; block: number; field: readonly [number, number]; text: string }
    | { kind: 'random'; bytes: Uint8Array };

  function apply(m: Mutation, src: Buffer): Buffer {
    const b = Buffer.from(src);
    switch (m.kind) {
      case 'flip':
        for (const [at, v] of m.edits) {
          b[at % b.length] = v;
        }
        return b;
      case 'truncate':
        return b.subarray(0, m.at % b.length);
      case 'header': {
        const off = (m.block * 512) % b.length;
        const [start, len] = m.field;
        const bytes = Buffer.alloc(len);
        Buffer.from(m.text, 'utf8').copy(bytes, 0, 0, len);
        bytes.copy(b, Math.min(off + start, b.length - 1));
        return b;
      }
      case 'random':
        return Buffer.from(m.bytes);
    }
  }

  /** Everything under `dir`, as `path type` lines, without following links. */
  function tree(dir: string): string[] {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        const s = lstatSync(p);
        out.push(`${p} ${s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : 'f'}`);
        if (s.isDirectory()) {
          walk(p);
        }
      }
    };
    walk(dir);
    return out.sort();
  }

  it('mutated and random layer tars: only LayerError, nothing written outside the target, never hangs', async () => {
    const sentinel = join(base, 'sentinel');
    const sentinelHash = createHash('sha256').update(readFileSync(sentinel)).digest('hex');
    const outsideBefore = tree(base);
    let runs = 0;
    let applied = 0;
    const refusals = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: validTars.length - 1 }), mutation, async (which, m) => {
        runs++;
        const bytes = apply(m, validTars[which]);
        const target = mkdtempSync(join(base, 'target-'));
        try {
          let timer: NodeJS.Timeout | undefined;
          const outcome = await Promise.race([
            applyLayer(Readable.from([bytes]), target).then(
              () => 'applied',
              (err: unknown) => err,
            ),
            new Promise((r) => (timer = setTimeout(() => r('timeout'), 15_000))),
          ]);
          clearTimeout(timer);
          if (outcome === 'timeout') {
            throw new Error(`applyLayer hung on ${m.kind} of tar ${which}`);
          }
          if (outcome === 'applied') {
            applied++;
          } else if (outcome instanceof LayerError) {
            refusals.set(outcome.code, (refusals.get(outcome.code) ?? 0) + 1);
          } else {
            throw new Error(`applyLayer threw a non-LayerError: ${String(outcome)}`, { cause: outcome });
          }
        } finally {
          rmSync(target, { recursive: true, force: true });
        }
        expect(tree(base)).toEqual(outsideBefore);
        expect(existsSync(join(base, '..', `${escapeTag}-up`))).toBe(false);
        expect(existsSync(`/${escapeTag}-up`)).toBe(false);
        expect(createHash('sha256').update(readFileSync(sentinel)).digest('hex')).toBe(sentinelHash);
      }),
      { seed: SEED, numRuns: FULL ? 2000 : 300 },
    );
    summary.push(
      `applyLayer: ${runs} mutated tars, ${applied} applied, refused ${[...refusals].map(([c, n]) => `${c}=${n}`).join(' ')}; ` +
        'no other error',
    );
  });

  // A corrupt gzip stream fails inside zlib; applyLayer must report it as a LayerError (a bad
  // layer is the user's input), or the engine treats a broken .tar.gz as a host fault and retries.
  it('a gzip layer with a corrupt CRC is refused with a LayerError', async () => {
    const gz = gzipSync(validTars[0]);
    gz[gz.length - 8] ^= 0xff; // CRC32 of the trailer
    const target = mkdtempSync(join(base, 'target-'));
    try {
      await expect(applyLayer(Readable.from([gz]), target)).rejects.toBeInstanceOf(LayerError);
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  });
});
