import {
  checkDockerfile,
  checkRuleEnabled,
  formatCheckWarning,
  parseCheckConfig,
  type CheckResult,
} from './dockerfile-checks';
import { DockerfileError } from './dockerfile-error';
import { parseDockerignore } from '@stratum/context';

const lines = (...ls: string[]): string => ls.join('\n') + '\n';
const rules = (r: CheckResult): string[] => r.warnings.map((w) => `${w.line} ${w.rule}`);
const short = (r: CheckResult): string[] => r.warnings.map(formatCheckWarning);

// The "Bad" and "Good" examples are those of each rule's page under
// https://docs.docker.com/reference/build-checks/ .
describe('checkDockerfile: BuildKit build checks', () => {
  it('JSONArgsRecommended: shell-form CMD/ENTRYPOINT, not exec form', () => {
    expect(short(checkDockerfile(lines('FROM alpine', 'ENTRYPOINT my-program start')))).toEqual([
      'JSONArgsRecommended: JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals (line 2)',
    ]);
    expect(rules(checkDockerfile(lines('FROM alpine', 'ENTRYPOINT ["my-program", "start"]')))).toEqual([]);
    // an explicit SHELL says the shell form is meant
    expect(rules(checkDockerfile(lines('FROM alpine', 'SHELL ["/bin/sh", "-c"]', 'CMD echo hi')))).toEqual(
      [],
    );
  });

  it('SecretsUsedInArgOrEnv: ARG/ENV keys that name secrets', () => {
    const r = checkDockerfile(
      lines(
        'FROM scratch',
        'ARG AWS_SECRET_ACCESS_KEY',
        'ENV passwd=banana github_token=x PUBLIC_KEY=y',
        'ARG MONKEY=1',
      ),
    );
    expect(short(r)).toEqual([
      'SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "AWS_SECRET_ACCESS_KEY") (line 2)',
      'SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "passwd") (line 3)',
      'SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV "github_token") (line 3)',
    ]);
  });

  it('FromAsCasing and StageNameCasing', () => {
    expect(short(checkDockerfile(lines('FROM debian:latest as builder')))).toEqual([
      "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
    ]);
    expect(rules(checkDockerfile(lines('FROM debian:latest AS builder')))).toEqual([]);
    expect(rules(checkDockerfile(lines('from debian:latest as builder')))).toEqual([]);
    expect(short(checkDockerfile(lines('FROM node:latest AS BuilderBase')))).toEqual([
      "StageNameCasing: Stage name 'BuilderBase' should be lowercase (line 1)",
    ]);
  });

  it('DuplicateStageName and ReservedStageName', () => {
    const r = checkDockerfile(
      lines(
        'FROM debian:latest AS builder',
        'RUN apt-get update',
        'FROM golang:latest AS builder',
        'FROM alpine AS scratch',
      ),
    );
    expect(short(r)).toEqual([
      'DuplicateStageName: Duplicate stage name "builder", stage names should be unique (line 3)',
      'ReservedStageName: Stage name should not use the same name as reserved stage "scratch" (line 4)',
    ]);
  });

  it('UndefinedVar: a variable used before it is defined, with a suggestion', () => {
    const r = checkDockerfile(
      lines('FROM alpine AS base', 'COPY $foo .', 'ENV PATH=$PATH:/app/bin', 'ARG VERSION', 'ENV V=$VERSON'),
    );
    expect(short(r)).toEqual([
      "UndefinedVar: Usage of undefined variable '$foo' (line 2)",
      "UndefinedVar: Usage of undefined variable '$VERSON' (did you mean $VERSION?) (line 5)",
    ]);
    // defined by ENV, by an earlier stage it builds on, or handled by a default
    const ok = checkDockerfile(
      lines('FROM alpine AS a', 'ENV foo=bar', 'COPY $foo .', 'FROM a', 'WORKDIR /$foo', 'ENV X=${UNSET:-x}'),
    );
    expect(rules(ok)).toEqual([]);
    // RUN's variables are the shell's, not the builder's
    expect(rules(checkDockerfile(lines('FROM alpine', 'RUN echo $HOME')))).toEqual([]);
  });

  it('UndefinedArgInFrom and InvalidDefaultArgInFrom', () => {
    expect(short(checkDockerfile(lines('FROM node:22${VARIANT} AS jsbuilder')))).toEqual([
      "UndefinedArgInFrom: FROM argument 'VARIANT' is not declared (line 1)",
    ]);
    expect(short(checkDockerfile(lines('ARG VARIANT=-alpine', 'FROM node:22${VARAINT}')))).toEqual([
      "UndefinedArgInFrom: FROM argument 'VARAINT' is not declared (did you mean VARIANT?) (line 2)",
    ]);
    expect(short(checkDockerfile(lines('ARG TAG', 'FROM busybox:${TAG}')))).toEqual([
      'InvalidDefaultArgInFrom: Default value for ARG busybox:${TAG} results in empty or invalid base image name (line 2)',
    ]);
    expect(rules(checkDockerfile(lines('ARG TAG=latest', 'FROM busybox:${TAG}')))).toEqual([]);
    expect(rules(checkDockerfile(lines('ARG VARIANT=alpine', 'FROM node:22-${VARIANT}')))).toEqual([]);
    expect(rules(checkDockerfile(lines('FROM --platform=$BUILDPLATFORM alpine')))).toEqual([]);
  });

  it('WorkdirRelativePath: relative WORKDIR without an absolute one before it', () => {
    expect(short(checkDockerfile(lines('FROM alpine', 'WORKDIR app/')))).toEqual([
      'WorkdirRelativePath: Relative workdir "app/" can have unexpected results if the base image changes (line 2)',
    ]);
    expect(rules(checkDockerfile(lines('FROM alpine', 'WORKDIR /usr/src', 'WORKDIR app/')))).toEqual([]);
  });

  it('MultipleInstructionsDisallowed: every CMD, ENTRYPOINT, HEALTHCHECK but the last of a stage', () => {
    const r = checkDockerfile(
      lines(
        'FROM alpine',
        'ENTRYPOINT ["echo", "Hello, Norway!"]',
        'ENTRYPOINT ["echo", "Hello, Sweden!"]',
        'FROM alpine',
        'CMD ["a"]',
      ),
    );
    expect(short(r)).toEqual([
      'MultipleInstructionsDisallowed: Multiple ENTRYPOINT instructions should not be used in the same stage because only the last one will be used (line 2)',
    ]);
  });

  it('LegacyKeyValueFormat, MaintainerDeprecated, ConsistentInstructionCasing, NoEmptyContinuation', () => {
    const r = checkDockerfile(
      lines(
        'FROM alpine',
        'ARG foo',
        'ENV foo bar',
        'LABEL a=b',
        'MAINTAINER me',
        'run echo hi \\',
        '',
        '  && echo there',
      ),
    );
    expect(rules(r)).toEqual([
      '3 LegacyKeyValueFormat',
      '5 MaintainerDeprecated',
      '6 ConsistentInstructionCasing',
      '6 NoEmptyContinuation',
    ]);
    expect(r.warnings[0]?.message).toBe(
      '"ENV key=value" should be used instead of legacy "ENV key value" format',
    );
    expect(r.warnings[2]?.message).toBe(
      "Command 'run' should match the case of the command majority (uppercase)",
    );
  });

  it('RedundantTargetPlatform', () => {
    expect(short(checkDockerfile(lines('FROM --platform=$TARGETPLATFORM alpine AS builder')))).toEqual([
      'RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior (line 1)',
    ]);
  });

  it('FromPlatformFlagConstDisallowed: a constant --platform, unless the stage name says which platform', () => {
    // Bad
    expect(short(checkDockerfile(lines('FROM --platform=linux/amd64 alpine AS base', 'RUN true')))).toEqual([
      'FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value "linux/amd64" (line 1)',
    ]);
    // Good: the default platform, a meta variable, a stage named for its architecture
    expect(rules(checkDockerfile(lines('FROM alpine AS base', 'RUN true')))).toEqual([]);
    expect(rules(checkDockerfile(lines('FROM --platform=${BUILDPLATFORM} alpine AS base')))).toEqual([]);
    expect(
      rules(
        checkDockerfile(
          lines(
            'FROM --platform=linux/amd64 alpine AS build_amd64',
            'FROM --platform=linux/arm64 alpine AS build_arm64',
            'ARG TARGETARCH',
            'FROM build_${TARGETARCH} AS build',
          ),
        ),
      ),
    ).toEqual([]);
  });

  it("CopyIgnoredFile (experimental): only when asked for, and only with the context's .dockerignore", () => {
    const dockerignore = parseDockerignore('secret.txt\nbuild/\n');
    const df = lines(
      '# check=experimental=CopyIgnoredFile',
      'FROM alpine',
      'COPY secret.txt app.txt /app/',
      'ADD ./build/out.bin /app/',
      'COPY --from=alpine secret.txt /x',
    );
    expect(short(checkDockerfile(df, { dockerignore }))).toEqual([
      'CopyIgnoredFile: Attempting to Copy file "secret.txt" that is excluded by .dockerignore (line 3)',
      'CopyIgnoredFile: Attempting to Add file "./build/out.bin" that is excluded by .dockerignore (line 4)',
    ]);
    expect(rules(checkDockerfile(df))).toEqual([]); // no context (stratum build --check)
    expect(
      rules(checkDockerfile(df.replace('# check=experimental=CopyIgnoredFile\n', ''), { dockerignore })),
    ).toEqual([]);
    expect(checkRuleEnabled(parseCheckConfig('experimental=all'), 'CopyIgnoredFile')).toBe(true);
    expect(
      checkRuleEnabled(parseCheckConfig('experimental=all;skip=CopyIgnoredFile'), 'CopyIgnoredFile'),
    ).toBe(false);
    expect(checkRuleEnabled(parseCheckConfig(''), 'InvalidBaseImagePlatform')).toBe(true);
  });

  it('every warning carries its rule description and documentation URL', () => {
    const [w] = checkDockerfile(lines('FROM alpine', 'CMD echo hi')).warnings;
    expect(w).toMatchObject({
      rule: 'JSONArgsRecommended',
      url: 'https://docs.docker.com/go/dockerfile/rule/json-args-recommended/',
      line: 2,
      endLine: 2,
    });
  });
});

describe('# check= directive and BUILDKIT_DOCKERFILE_CHECK', () => {
  const bad = lines('FROM alpine as base', 'CMD echo hi');

  it('skip= leaves rules out, skip=all leaves everything out', () => {
    expect(rules(checkDockerfile(lines('# check=skip=JSONArgsRecommended', bad)))).toEqual([
      '2 FromAsCasing',
    ]);
    expect(rules(checkDockerfile(lines('# check=skip=JSONArgsRecommended,FromAsCasing', bad)))).toEqual([]);
    expect(rules(checkDockerfile(lines('# check=skip=all', bad)))).toEqual([]);
  });

  it("error=true turns warnings into BuildKit's error", () => {
    const r = checkDockerfile(lines('# check=error=true', bad));
    expect(r.config.error).toBe(true);
    expect(r.error).toBe('lint violation found for rules: FromAsCasing, JSONArgsRecommended');
    expect(checkDockerfile(lines('# check=error=true', 'FROM alpine')).error).toBeUndefined();
    expect(checkDockerfile(lines('# check=skip=all;error=true', bad)).error).toBeUndefined();
  });

  it('the build arg wins over the directive', () => {
    const r = checkDockerfile(lines('# check=error=true', bad), {
      buildArgs: { BUILDKIT_DOCKERFILE_CHECK: 'skip=JSONArgsRecommended' },
    });
    expect(rules(r)).toEqual(['2 FromAsCasing']);
    expect(r.error).toBeUndefined();
  });

  it('refuses unknown options with the directive line', () => {
    expect(() => parseCheckConfig('skip=a;bogus=1', 1)).toThrow('invalid check option "bogus"');
    let err: unknown;
    try {
      checkDockerfile(lines('# check=error=maybe', 'FROM alpine'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DockerfileError);
    expect((err as DockerfileError).line).toBe(1);
    expect((err as DockerfileError).detail).toContain('failed to parse check option "error=maybe"');
  });
});
