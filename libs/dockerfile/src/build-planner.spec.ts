import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { planBuild } from './build-planner';
import { DockerfileError } from './dockerfile-error';
import { parseDockerfile } from './dockerfile-parser';
import { BENCH_WORKLOADS } from '@stratum/testing';

const lines = (...ls: string[]): string => ls.join('\n') + '\n';
const plan = (text: string, options = {}): ReturnType<typeof planBuild> =>
  planBuild(parseDockerfile(text), options);

function planError(text: string, options = {}): DockerfileError {
  try {
    plan(text, options);
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    return err as DockerfileError;
  }
  throw new Error('expected a DockerfileError');
}

const MULTI = lines(
  'ARG GO=1.22',
  'FROM golang:${GO} AS build', // 0
  'RUN go build -o /app',
  'FROM node:20 AS web', // 1
  'RUN npm ci',
  'FROM alpine AS unused', // 2
  'RUN true',
  'FROM build AS test', // 3
  'RUN go test ./...',
  'FROM scratch', // 4
  'COPY --from=build /app /app',
  'COPY --from=1 /dist /www',
  'COPY --from=nginx:latest /etc/nginx /etc/nginx',
  'RUN --mount=type=bind,from=build,source=/app,target=/x true',
);

describe('planBuild', () => {
  it('defaults to the last stage and skips stages it does not need', () => {
    const p = plan(MULTI);
    expect(p.target).toBe(4);
    expect(p.stages.map((s) => s.index)).toEqual([0, 1, 4]);
    expect(p.skipped).toEqual([2, 3]);
  });

  it('resolves bases: image (expanded), stage, scratch', () => {
    const p = plan(MULTI, { target: 'test' });
    expect(p.stages.map((s) => [s.index, s.base])).toEqual([
      [0, { kind: 'image', ref: 'golang:1.22' }],
      [3, { kind: 'stage', index: 0 }],
    ]);
    expect(plan(MULTI).stages[2].base).toEqual({ kind: 'scratch' });
  });

  it('records COPY --from by name, by index and from an image, and RUN --mount from', () => {
    const final = plan(MULTI).stages[2];
    expect(final.dependsOn).toEqual([0, 1]);
    expect(final.imageSources).toEqual(['nginx:latest']);
    expect(final.dependencies.map((d) => [d.via, d.line, d.stageIndex ?? d.image])).toEqual([
      ['COPY --from', 11, 0],
      ['COPY --from', 12, 1],
      ['COPY --from', 13, 'nginx:latest'],
      ['RUN --mount', 14, 0],
    ]);
  });

  it('groups independent stages for parallel execution', () => {
    expect(plan(MULTI).parallelGroups).toEqual([[0, 1], [4]]);
    const chain = plan(lines('FROM a AS one', 'FROM one AS two', 'FROM two AS three', 'COPY --from=one / /'));
    expect(chain.parallelGroups).toEqual([[0], [1], [2]]);
    expect(chain.stages.map((s) => s.level)).toEqual([0, 1, 2]);
  });

  it('--target is case-insensitive; unknown target names it', () => {
    expect(plan(MULTI, { target: 'WEB' }).stages.map((s) => s.index)).toEqual([1]);
    const err = planError(MULTI, { target: 'prod' });
    expect(err.code).toBe('DOCKERFILE_PLAN');
    expect(err.message).toContain('target stage "prod" could not be found');
  });

  it('a stage named like a later stage in FROM is an image', () => {
    const p = plan(lines('FROM later AS first', 'FROM alpine AS later'), { target: 'first' });
    expect(p.stages[0].base).toEqual({ kind: 'image', ref: 'later' });
  });

  it('FROM may name an earlier stage through an ARG', () => {
    const p = plan(lines('ARG BASE=builder', 'FROM alpine AS builder', 'FROM $BASE'));
    expect(p.stages[1].base).toEqual({ kind: 'stage', index: 0 });
  });

  it('COPY --from may be expanded from stage ARGs', () => {
    const p = plan(
      lines('FROM alpine AS src', 'FROM scratch', 'ARG FROM_STAGE=src', 'COPY --from=$FROM_STAGE / /'),
    );
    expect(p.stages.map((s) => s.index)).toEqual([0, 1]);
  });

  it.each([
    [
      lines('FROM a AS x', 'COPY --from=y / /', 'FROM b AS y'),
      2,
      'refers to the current or a later build stage "y"',
    ],
    [lines('FROM a AS x', 'COPY --from=x / /'), 2, 'refers to the current or a later build stage "x"'],
    [
      lines('FROM a', 'COPY --from=1 / /', 'FROM b'),
      2,
      '--from=1 refers to the current or a later build stage',
    ],
    [lines('FROM a', 'FROM b', 'COPY --from=5 / /'), 3, 'invalid stage index 5'],
    [lines('FROM a', 'FROM b', 'RUN --mount=from=1,target=/x true'), 3, 'later build stage'],
  ])('rejects forward references (%#)', (text, line, message) => {
    const err = planError(text);
    expect(err.line).toBe(line);
    expect(err.message).toContain(message);
  });

  it('reports unused build args, ignoring proxy and platform args', () => {
    const p = plan(lines('ARG A', 'FROM scratch AS s', 'ARG B', 'FROM scratch', 'ARG C'), {
      buildArgs: { A: '1', B: '2', C: '3', D: '4', HTTP_PROXY: 'x', TARGETOS: 'linux' },
    });
    // B is declared only in a stage the target does not need.
    expect(p.unusedBuildArgs).toEqual(['B', 'D']);
  });

  it('the plan is plain JSON data', () => {
    const p = plan(MULTI);
    expect(JSON.parse(JSON.stringify(p))).toEqual(p);
  });
});

describe('bench workloads parse and plan', () => {
  const root = BENCH_WORKLOADS;
  const load = (name: string): ReturnType<typeof parseDockerfile> =>
    parseDockerfile(readFileSync(join(root, name, 'Dockerfile'), 'utf8'));

  it('bigdata', () => {
    const df = load('bigdata');
    expect(df.instructions.map((i) => i.kind)).toEqual(['FROM', 'ADD', 'ENV', 'RUN', 'RUN', 'RUN']);
    const p = planBuild(df);
    expect(p.stages[0].base).toEqual({ kind: 'scratch' });
    expect(p.parallelGroups).toEqual([[0]]);
  });

  it('context', () => {
    const df = load('context');
    const run = df.stages[0].instructions[2];
    expect(run).toMatchObject({
      kind: 'RUN',
      command: { form: 'exec', args: ['/bin/sh', '-c', 'find /src -type f | wc -l > /files.count'] },
    });
    expect(df.stages[0].instructions[1]).toMatchObject({ kind: 'COPY', sources: ['.'], dest: '/src/' });
  });

  it('manyfiles', () => {
    const df = load('manyfiles');
    expect(df.stages).toHaveLength(1);
    expect(df.instructions.map((i) => [i.kind, i.startLine])).toEqual([
      ['FROM', 2],
      ['ADD', 3],
      ['ENV', 4],
      ['RUN', 5],
      ['RUN', 6],
    ]);
  });

  it('multistage: two independent stages run in parallel, then the final one', () => {
    const p = planBuild(load('multistage'));
    expect(p.stages.map((s) => [s.index, s.name, s.base])).toEqual([
      [0, 'base', { kind: 'scratch' }],
      [1, 'left', { kind: 'stage', index: 0 }],
      [2, 'right', { kind: 'stage', index: 0 }],
      [3, undefined, { kind: 'stage', index: 0 }],
    ]);
    expect(p.parallelGroups).toEqual([[0], [1, 2], [3]]);
    expect(p.stages[3].dependsOn).toEqual([0, 1, 2]);
    expect(planBuild(load('multistage'), { target: 'left' }).skipped).toEqual([2, 3]);
  });

  it('steps: every instruction kind it uses, expanded', () => {
    const df = load('steps');
    const p = planBuild(df, { buildArgs: { GREETING: 'hi' } });
    expect(p.unusedBuildArgs).toEqual([]);
    const kinds = df.stages[0].instructions.map((i) => i.kind);
    expect(kinds).toEqual([
      'ADD',
      'ENV',
      'ARG',
      'LABEL',
      'RUN',
      'RUN',
      'RUN',
      'COPY',
      'RUN',
      'WORKDIR',
      'RUN',
      'USER',
      'RUN',
      'EXPOSE',
      'VOLUME',
      'ENTRYPOINT',
      'CMD',
    ]);
    const label = df.stages[0].instructions[3];
    expect(label).toMatchObject({ labels: [{ key: 'org.opencontainers.image.title', value: '"steps"' }] });
  });
});
