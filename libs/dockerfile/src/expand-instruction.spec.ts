import { createStageScope, expandStage, planBuild, type PlanOptions } from './build-planner';
import { DockerfileError } from './dockerfile-error';
import { parseDockerfile } from './dockerfile-parser';
import { expandInstruction } from './expand-instruction';
import type { Instruction } from './instructions';

const lines = (...ls: string[]): string => ls.join('\n') + '\n';

/** Expands every instruction of the last stage in order; returns them. */
function expandAll(
  text: string,
  options: PlanOptions = {},
  baseEnv: Record<string, string> = {},
): Instruction[] {
  const plan = planBuild(parseDockerfile(text), options);
  return expandStage(plan, plan.target, baseEnv).map((e) => e.instruction);
}

function last<T extends Instruction>(
  text: string,
  options: PlanOptions = {},
  baseEnv: Record<string, string> = {},
): T {
  const all = expandAll(text, options, baseEnv);
  return all[all.length - 1] as T;
}

describe('expandInstruction: which instructions expand', () => {
  const df = lines(
    'FROM scratch',
    'ENV DIR=/srv P=8080 U=app SIG=SIGTERM NAME="my app"',
    'RUN echo $DIR',
    'CMD echo $DIR',
    'ENTRYPOINT ["echo", "$DIR"]',
    'SHELL ["/bin/sh", "-c"]',
    'HEALTHCHECK CMD curl $DIR',
    'ONBUILD RUN echo $DIR',
    'MAINTAINER $U',
    'WORKDIR $DIR/app',
    'USER ${U}:${U}',
    'STOPSIGNAL $SIG',
    'EXPOSE $P ${P}/udp',
    'VOLUME $DIR/data ["x"]',
    'VOLUME ["$DIR/a", "$DIR/b"]',
    'LABEL "$NAME"="${NAME} v1" plain=$P',
    'COPY --chown=$U:$U --chmod=644 $DIR/a "$DIR/b" ${DIR}/dst/',
    'ADD --checksum=sha256:$P https://x/$U.tgz /opt/',
    'ARG A=$DIR',
  );
  const out = expandAll(df);

  it('leaves RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD and MAINTAINER alone', () => {
    expect(out[1]).toMatchObject({ kind: 'RUN', command: { form: 'shell', command: 'echo $DIR' } });
    expect(out[2]).toMatchObject({ kind: 'CMD', command: { form: 'shell', command: 'echo $DIR' } });
    expect(out[3]).toMatchObject({ kind: 'ENTRYPOINT', command: { form: 'exec', args: ['echo', '$DIR'] } });
    expect(out[5]).toMatchObject({ test: ['CMD-SHELL', 'curl $DIR'] });
    expect(out[6]).toMatchObject({ expression: 'RUN echo $DIR' });
    expect(out[7]).toMatchObject({ maintainer: '$U' });
  });

  it('expands WORKDIR, USER, STOPSIGNAL as single words', () => {
    expect(out.slice(8, 11)).toEqual([
      expect.objectContaining({ path: '/srv/app' }),
      expect.objectContaining({ user: 'app:app' }),
      expect.objectContaining({ signal: 'SIGTERM' }),
    ]);
  });

  it('splits EXPOSE into words, VOLUME items are single words', () => {
    expect(out[11]).toMatchObject({ ports: ['8080', '8080/udp'] });
    expect(out[12]).toMatchObject({ paths: ['/srv/data', '[x]'] });
    expect(out[13]).toMatchObject({ paths: ['/srv/a', '/srv/b'] });
  });

  it('removes quotes and expands LABEL keys and values', () => {
    expect(out[14]).toMatchObject({
      labels: [
        { key: 'my app', value: 'my app v1' },
        { key: 'plain', value: '8080' },
      ],
    });
  });

  it('expands COPY/ADD sources, destination and flags', () => {
    expect(out[15]).toMatchObject({
      chown: 'app:app',
      chmod: '644',
      sources: ['/srv/a', '/srv/b'],
      dest: '/srv/dst/',
    });
    expect(out[16]).toMatchObject({ checksum: 'sha256:8080', sources: ['https://x/app.tgz'], dest: '/opt/' });
  });

  it('expands ARG defaults', () => {
    expect(out[17]).toMatchObject({ args: [{ name: 'A', defaultValue: '/srv' }] });
  });
});

describe('ENV semantics', () => {
  it('a line sees the values from before it (docs: def=$abc → hello)', () => {
    const env = expandAll(lines('FROM scratch', 'ENV abc=hello', 'ENV abc=bye def=$abc', 'ENV ghi=$abc'));
    expect(env[1]).toMatchObject({
      pairs: [
        { key: 'abc', value: 'bye' },
        { key: 'def', value: 'hello' },
      ],
    });
    expect(env[2]).toMatchObject({ pairs: [{ key: 'ghi', value: 'bye' }] });
  });

  it('legacy form keeps the rest of the line, spaces included', () => {
    const env = last(lines('FROM scratch', 'ENV MSG hello   big "world"'));
    expect(env).toMatchObject({ pairs: [{ key: 'MSG', value: 'hello   big world' }] });
  });

  it('escapes and quotes in values', () => {
    const env = last(lines('FROM scratch', `ENV A=a\\ b B='$x' C="\\$y" D=\\$z E="q\\"q"`));
    expect(env).toMatchObject({
      pairs: [
        { key: 'A', value: 'a b' },
        { key: 'B', value: '$x' },
        { key: 'C', value: '$y' },
        { key: 'D', value: '$z' },
        { key: 'E', value: 'q"q' },
      ],
    });
  });

  it('sees the base image environment', () => {
    const wd = last(lines('FROM alpine', 'WORKDIR $HOME/x'), {}, { HOME: '/root' });
    expect(wd).toMatchObject({ path: '/root/x' });
  });

  it('the backtick escape directive applies to expansion', () => {
    const wd = last(lines('# escape=`', 'FROM scratch', 'ENV A=1', 'WORKDIR c:\\`$A\\$A'));
    expect(wd).toMatchObject({ path: 'c:\\$A\\1' });
  });
});

describe('ARG semantics', () => {
  it('global ARGs are usable only in FROM lines unless re-declared', () => {
    const text = lines(
      'ARG TAG=3.19',
      'FROM alpine:$TAG',
      'RUN true',
      'WORKDIR /x$TAG',
      'ARG TAG',
      'WORKDIR /y$TAG',
    );
    const plan = planBuild(parseDockerfile(text));
    expect(plan.stages[0].base).toEqual({ kind: 'image', ref: 'alpine:3.19' });
    const ins = expandStage(plan, 0).map((e) => e.instruction);
    expect(ins[1]).toMatchObject({ path: '/x' });
    expect(ins[3]).toMatchObject({ path: '/y3.19' });
  });

  it('--build-arg overrides defaults, globally and in the stage', () => {
    const text = lines('ARG TAG=3.19', 'FROM alpine:$TAG', 'ARG TAG', 'ARG V=1', 'WORKDIR /$TAG/$V');
    const plan = planBuild(parseDockerfile(text), { buildArgs: { TAG: 'edge', V: '2' } });
    expect(plan.stages[0].base).toEqual({ kind: 'image', ref: 'alpine:edge' });
    expect(expandStage(plan, 0)[2].instruction).toMatchObject({ path: '/edge/2' });
  });

  it('a build arg is invisible without an ARG declaration', () => {
    const wd = last(lines('FROM scratch', 'WORKDIR /$V'), { buildArgs: { V: 'x' } });
    expect(wd).toMatchObject({ path: '/' });
  });

  it('ENV takes precedence over an ARG of the same name, whatever the order', () => {
    const opts = { buildArgs: { V: 'from-arg' } };
    expect(last(lines('FROM scratch', 'ARG V', 'ENV V=from-env', 'WORKDIR /$V'), opts)).toMatchObject({
      path: '/from-env',
    });
    expect(last(lines('FROM scratch', 'ENV V=from-env', 'ARG V', 'WORKDIR /$V'), opts)).toMatchObject({
      path: '/from-env',
    });
  });

  it('ARG scope ends with the stage', () => {
    const text = lines('FROM scratch AS a', 'ARG X=1', 'FROM scratch', 'WORKDIR /$X');
    expect(last(text)).toMatchObject({ path: '/' });
  });

  it('ARG defaults can use earlier ARGs and ENV', () => {
    const text = lines('FROM scratch', 'ENV E=e', 'ARG A=a', 'ARG B=${A}-${E}', 'WORKDIR /$B');
    expect(last(text)).toMatchObject({ path: '/a-e' });
  });

  it('global ARG defaults can use earlier global ARGs', () => {
    const plan = planBuild(
      parseDockerfile(lines('ARG REG=docker.io', 'ARG IMG=$REG/library/alpine', 'FROM $IMG')),
    );
    expect(plan.stages[0].base).toEqual({ kind: 'image', ref: 'docker.io/library/alpine' });
  });

  it('proxy args are usable without declaration and are in the RUN environment', () => {
    const text = lines('FROM scratch', 'WORKDIR /$HTTP_PROXY', 'RUN true');
    const plan = planBuild(parseDockerfile(text), { buildArgs: { HTTP_PROXY: 'p', no_proxy: 'n' } });
    const out = expandStage(plan, 0);
    expect(out[0].instruction).toMatchObject({ path: '/p' });
    expect(out[1].runEnvironment).toEqual({ HTTP_PROXY: 'p', no_proxy: 'n' });
    expect(plan.unusedBuildArgs).toEqual([]);
  });

  it('RUN environment has declared ARGs and ENV, ENV winning', () => {
    const text = lines('FROM scratch', 'ARG A=1 B', 'ENV A=2 C=3', 'RUN true');
    const out = expandStage(planBuild(parseDockerfile(text)), 0);
    expect(out[2].runEnvironment).toEqual({ A: '2', C: '3' });
  });

  it('automatic platform args: global scope, and in a stage when declared', () => {
    const text = lines(
      'FROM --platform=$BUILDPLATFORM golang AS build',
      'ARG TARGETOS TARGETARCH',
      'WORKDIR /$TARGETOS/$TARGETARCH/$BUILDARCH',
    );
    const plan = planBuild(parseDockerfile(text), {
      targetPlatform: 'linux/arm64/v8',
      buildPlatform: 'linux/amd64',
    });
    expect(plan.stages[0].platform).toBe('linux/amd64');
    expect(expandStage(plan, 0)[1].instruction).toMatchObject({ path: '/linux/arm64/' });
  });

  it('${VAR:?msg} fails with the line of the instruction', () => {
    const text = lines(
      'FROM scratch',
      'ARG VERSION',
      'RUN true',
      'WORKDIR /app/${VERSION:?VERSION must be set}',
    );
    let err: unknown;
    try {
      expandAll(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DockerfileError);
    expect(err).toMatchObject({ code: 'DOCKERFILE_EXPANSION', line: 4 });
    expect((err as Error).message).toContain('VERSION: VERSION must be set');
  });

  it('FROM with an empty base name fails', () => {
    expect(() => planBuild(parseDockerfile(lines('ARG IMG', 'FROM $IMG')))).toThrow(
      'base name ($IMG) should not be blank',
    );
  });
});

describe('expandInstruction details', () => {
  it('COPY heredoc bodies expand unless the delimiter was quoted; quotes stay literal', () => {
    const text = lines(
      'FROM scratch',
      'ARG NAME=world',
      'COPY <<EOF <<"RAW" /dst/',
      `hello "$NAME" '\${NAME}'`,
      'EOF',
      'raw $NAME',
      'RAW',
    );
    const copy = last(text);
    expect(copy).toMatchObject({
      inlineSources: [
        { path: 'EOF', data: `hello "world" 'world'\n`, expand: true },
        { path: 'RAW', data: 'raw $NAME\n', expand: false },
      ],
    });
  });

  it('RUN --mount options are expanded and re-validated', () => {
    const text = lines(
      'FROM scratch AS deps',
      'FROM scratch',
      'ARG T=cache ID=npm',
      'RUN --mount=type=$T,target=/c,id=$ID --mount=from=deps,target=/d true',
    );
    const run = last(text);
    expect(run).toMatchObject({
      mounts: [
        expect.objectContaining({ type: 'cache', target: '/c', id: 'npm', sharing: 'shared' }),
        expect.objectContaining({ type: 'bind', from: 'deps', target: '/d' }),
      ],
    });
  });

  it('does not touch the scope and keeps line information', () => {
    const df = parseDockerfile(lines('FROM scratch', 'ENV A=1'));
    const plan = planBuild(df);
    const scope = createStageScope(plan);
    const env = expandInstruction(df.stages[0].instructions[0], scope);
    expect(scope.lookup('A')).toBeUndefined();
    scope.apply(env);
    expect(scope.lookup('A')).toBe('1');
    expect(env.startLine).toBe(2);
  });

  it('VOLUME that expands to nothing is rejected', () => {
    expect(() => expandAll(lines('FROM scratch', 'VOLUME $NOPE'))).toThrow(
      'VOLUME specified can not be an empty string',
    );
  });
});
