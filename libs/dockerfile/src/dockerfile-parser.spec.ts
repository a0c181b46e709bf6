import { DockerfileError } from './dockerfile-error';
import { createStageScope, planBuild } from './build-planner';
import { parseDockerfile } from './dockerfile-parser';
import { expandInstruction } from './expand-instruction';
import type {
  AddInstruction,
  ArgInstruction,
  CmdInstruction,
  CopyInstruction,
  EntrypointInstruction,
  EnvInstruction,
  ExposeInstruction,
  FromInstruction,
  HealthcheckInstruction,
  Instruction,
  LabelInstruction,
  OnbuildInstruction,
  RunInstruction,
  ShellInstruction,
  VolumeInstruction,
} from './instructions';

const lines = (...ls: string[]): string => ls.join('\n') + '\n';

/** The instructions of a one-stage file after `FROM scratch`. */
function body(...ls: string[]): Instruction[] {
  return parseDockerfile(lines('FROM scratch', ...ls)).stages[0].instructions;
}

function only<T extends Instruction>(...ls: string[]): T {
  const [first] = body(...ls);
  return first as T;
}

function parseError(text: string): DockerfileError {
  try {
    parseDockerfile(text);
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    return err as DockerfileError;
  }
  throw new Error('expected a DockerfileError');
}

describe('parseDockerfile: structure', () => {
  it('parses stages, global ARGs and keeps every instruction in order', () => {
    const df = parseDockerfile(
      lines('ARG V=1', 'FROM alpine:${V} AS Build', 'RUN make', 'FROM scratch', 'COPY --from=build /a /a'),
    );
    expect(df.globalArgs).toHaveLength(1);
    expect(df.stages.map((s) => [s.index, s.name, s.from.image])).toEqual([
      [0, 'build', 'alpine:${V}'],
      [1, undefined, 'scratch'],
    ]);
    expect(df.instructions.map((i) => i.kind)).toEqual(['ARG', 'FROM', 'RUN', 'FROM', 'COPY']);
    expect(df.stages[0].instructions.map((i) => i.kind)).toEqual(['RUN']);
  });

  it('is case-insensitive for keywords and keeps the keyword as written', () => {
    const df = parseDockerfile(lines('from alpine as B', 'Run echo', 'cOpY a b'));
    expect(df.stages[0].name).toBe('b');
    expect(df.instructions.map((i) => [i.kind, i.keyword])).toEqual([
      ['FROM', 'from'],
      ['RUN', 'Run'],
      ['COPY', 'cOpY'],
    ]);
  });

  it('records start/end lines, the logical line and the exact source', () => {
    const text = lines('# c', '', 'FROM scratch', 'RUN a \\', '  b \\', '  c', 'CMD x');
    const df = parseDockerfile(text);
    const run = df.instructions[1];
    expect([run.startLine, run.endLine]).toEqual([4, 6]);
    expect(run.original).toBe('RUN a   b   c');
    expect(run.source).toBe('RUN a \\\n  b \\\n  c\n');
    expect(df.instructions[2].startLine).toBe(7);
  });

  it('treats only full lines starting with # as comments', () => {
    const run = only<RunInstruction>('  # indented comment', 'RUN echo a # not a comment');
    expect(run.command).toEqual({ form: 'shell', command: 'echo a # not a comment' });
  });

  it('skips comment and empty lines inside continuations (and warns on empty ones)', () => {
    const df = parseDockerfile(
      lines('FROM scratch', 'RUN echo a \\', '# comment', '    # indented comment', '', '  && echo b'),
    );
    const run = df.stages[0].instructions[0] as RunInstruction;
    expect(run.command).toEqual({ form: 'shell', command: 'echo a   && echo b' });
    expect([run.startLine, run.endLine]).toEqual([2, 6]);
    expect(df.warnings.map((w) => w.message)).toEqual([expect.stringContaining('Empty continuation line')]);
  });

  it('does not continue a line ending in an escaped escape character', () => {
    const ins = body('RUN echo \\\\', 'CMD x');
    expect(ins.map((i) => i.kind)).toEqual(['RUN', 'CMD']);
  });

  it('accepts CRLF line endings and a UTF-8 BOM', () => {
    const df = parseDockerfile('\uFEFFFROM scratch\r\nRUN a \\\r\n b\r\n');
    expect((df.instructions[1] as RunInstruction).command).toEqual({ form: 'shell', command: 'a  b' });
  });

  it('accepts a trailing continuation at EOF when the instruction has content (as BuildKit)', () => {
    const run = only<RunInstruction>('RUN echo hi \\');
    expect(run.command).toEqual({ form: 'shell', command: 'echo hi' });
  });
});

describe('parseDockerfile: directives', () => {
  it('reads syntax, escape and check at the top', () => {
    const df = parseDockerfile(
      lines('# syntax=docker/dockerfile:1.7', '#escape=`', '# check=skip=all', 'FROM scratch'),
    );
    expect(df.directives).toEqual({ syntax: 'docker/dockerfile:1.7', escape: '`', check: 'skip=all' });
  });

  it('uses the backtick as continuation and escape character', () => {
    const df = parseDockerfile(
      lines('# escape=`', 'FROM scratch', 'RUN dir c:\\ `', '  && echo done', 'ENV P="a`"b" Q=c:\\x'),
    );
    const run = df.stages[0].instructions[0] as RunInstruction;
    expect(run.command).toEqual({ form: 'shell', command: 'dir c:\\   && echo done' });
    const env = df.stages[0].instructions[1] as EnvInstruction;
    expect(env.pairs).toEqual([
      { key: 'P', value: '"a`"b"' },
      { key: 'Q', value: 'c:\\x' },
    ]);
  });

  it('ignores directives after a comment, an empty line or an instruction', () => {
    expect(parseDockerfile(lines('# hello', '# escape=`', 'FROM scratch')).directives.escape).toBe('\\');
    expect(parseDockerfile(lines('', '# escape=`', 'FROM scratch')).directives.escape).toBe('\\');
    expect(parseDockerfile(lines('FROM scratch', '# escape=`')).directives.escape).toBe('\\');
  });

  it('ignores unknown directives and stops looking after them', () => {
    const df = parseDockerfile(lines('# foo=bar', '# escape=`', 'FROM scratch'));
    expect(df.directives.escape).toBe('\\');
  });

  it('rejects repeated directives and bad escape tokens with the line', () => {
    const e1 = parseError(lines('# escape=`', '# escape=\\', 'FROM scratch'));
    expect(e1.message).toBe('dockerfile parse error on line 2: only one escape parser directive can be used');
    const e2 = parseError(lines('# escape=x', 'FROM scratch'));
    expect(e2.line).toBe(1);
    expect(e2.detail).toContain("invalid escape token 'x'");
  });
});

describe('parseDockerfile: exec vs shell form', () => {
  it.each([
    ['RUN ["echo", "a b"]', { form: 'exec', args: ['echo', 'a b'] }],
    ['RUN  [ "echo" ]', { form: 'exec', args: ['echo'] }],
    ['RUN [echo, a]', { form: 'shell', command: '[echo, a]' }],
    ["RUN ['echo']", { form: 'shell', command: "['echo']" }],
    ['RUN ["echo" "a"]', { form: 'shell', command: '["echo" "a"]' }],
    ['RUN echo "[not json]"', { form: 'shell', command: 'echo "[not json]"' }],
    ['RUN []', { form: 'exec', args: [] }],
  ])('%s', (line, command) => {
    expect(only<RunInstruction>(line).command).toEqual(command);
  });

  it('rejects JSON arrays of non-strings like Docker', () => {
    const err = parseError(lines('FROM scratch', 'CMD ["a", 1]'));
    expect(err.message).toBe(
      'dockerfile parse error on line 2: when using JSON array syntax, arrays must be comprised of strings only',
    );
  });

  it('CMD and ENTRYPOINT in both forms', () => {
    const [cmd, ep] = body('CMD ["cat", "/x"]', 'ENTRYPOINT exec top -b') as [
      CmdInstruction,
      EntrypointInstruction,
    ];
    expect(cmd.command).toEqual({ form: 'exec', args: ['cat', '/x'] });
    expect(ep.command).toEqual({ form: 'shell', command: 'exec top -b' });
  });

  it('SHELL requires JSON', () => {
    expect(only<ShellInstruction>('SHELL ["powershell", "-command"]').shell).toEqual([
      'powershell',
      '-command',
    ]);
    expect(parseError(lines('FROM scratch', 'SHELL /bin/bash -c')).detail).toContain('JSON');
    expect(parseError(lines('FROM scratch', 'SHELL []')).detail).toBe('SHELL requires at least one argument');
  });
});

describe('parseDockerfile: instructions', () => {
  it('FROM with platform and AS', () => {
    const from = parseDockerfile(lines('FROM --platform=$BUILDPLATFORM golang:1.22 AS builder')).stages[0]
      .from;
    expect(from).toMatchObject<Partial<FromInstruction>>({
      image: 'golang:1.22',
      name: 'builder',
      platform: '$BUILDPLATFORM',
    });
  });

  it.each([['FROM'], ['FROM a b'], ['FROM a AS'], ['FROM a AS b c']])(
    '%s: one or three arguments',
    (line) => {
      expect(parseError(lines(line)).detail).toBe('FROM requires either one or three arguments');
    },
  );

  it('rejects bad and duplicate stage names', () => {
    expect(parseError(lines('FROM a AS 1x')).detail).toContain('invalid name for build stage: "1x"');
    const dup = parseError(lines('FROM a AS x', 'FROM b AS X'));
    expect([dup.line, dup.detail]).toEqual([2, 'duplicate stage name "x"']);
  });

  it('RUN flags: mounts, network, security', () => {
    const run = only<RunInstruction>(
      'RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked --mount=type=secret,id=npmrc,target=/root/.npmrc,required \\',
      '    --mount=type=bind,from=build,source=/out,target=/in --network=none --security=insecure pip install .',
    );
    expect(run.command).toEqual({ form: 'shell', command: 'pip install .' });
    expect(run.network).toBe('none');
    expect(run.security).toBe('insecure');
    expect(run.mounts).toEqual([
      expect.objectContaining({
        type: 'cache',
        target: '/root/.cache',
        id: 'pip',
        sharing: 'locked',
        readOnly: false,
      }),
      expect.objectContaining({
        type: 'secret',
        id: 'npmrc',
        target: '/root/.npmrc',
        required: true,
        readOnly: true,
      }),
      expect.objectContaining({ type: 'bind', from: 'build', source: '/out', target: '/in', readOnly: true }),
    ]);
  });

  it('RUN mount defaults: cache sharing, secret target, ssh id, tmpfs size', () => {
    const run = only<RunInstruction>(
      'RUN --mount=type=cache,target=/c --mount=type=secret,id=aws --mount=type=ssh --mount=type=tmpfs,target=/t,size=64m --mount=target=/src,rw true',
    );
    expect(run.mounts.map((m) => [m.type, m.target, m.id, m.sharing, m.size, m.readOnly])).toEqual([
      ['cache', '/c', undefined, 'shared', undefined, false],
      ['secret', '/run/secrets/aws', 'aws', undefined, undefined, true],
      ['ssh', undefined, 'default', undefined, undefined, true],
      ['tmpfs', '/t', undefined, undefined, 64 * 1024 * 1024, false],
      ['bind', '/src', undefined, undefined, undefined, false],
    ]);
  });

  it.each([
    ['--mount=type=foo,target=/x', 'unsupported mount type "foo"'],
    ['--mount=type=cache,target=/x,sharing=bogus', 'unsupported sharing value "bogus"'],
    ['--mount=type=bind,target=/x,sharing=locked', 'invalid cache sharing set for bind mount'],
    ['--mount=type=secret', 'invalid secret mount. one of source, target required'],
    ['--mount=type=cache', 'mount type "cache" requires a target'],
    ['--mount=type=cache,target=/x,bogus=1', "unexpected key 'bogus' in 'bogus=1'"],
    ['--mount=type=bind,target=/x,required', "unexpected key 'required' for mount type 'bind'"],
    ['--network=bridge', 'network mode "bridge" not supported'],
    ['--foo=bar', 'unknown flag: foo'],
  ])('RUN %s is rejected', (flag, message) => {
    expect(parseError(lines('FROM scratch', `RUN ${flag} true`)).detail).toContain(message);
  });

  it('COPY with every flag', () => {
    const copy = only<CopyInstruction>(
      'COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b /dest/',
    );
    expect(copy).toMatchObject({
      from: 'build',
      chown: 'app:app',
      chmod: '0755',
      link: true,
      parents: true,
      exclude: ['*.md', 'tmp'],
      sources: ['a', 'b'],
      dest: '/dest/',
      json: false,
    });
  });

  it('COPY JSON form keeps spaces; shell form splits on whitespace only', () => {
    expect(only<CopyInstruction>('COPY ["a b", "/c d/"]')).toMatchObject({
      sources: ['a b'],
      dest: '/c d/',
      json: true,
    });
    expect(only<CopyInstruction>('COPY "a b" /c')).toMatchObject({ sources: ['"a', 'b"'], dest: '/c' });
  });

  it('ADD flags', () => {
    const add = only<AddInstruction>(
      'ADD --checksum=sha256:abc --keep-git-dir=true --link=false --unpack=false https://x/y.tar.gz /src',
    );
    expect(add).toMatchObject({
      checksum: 'sha256:abc',
      keepGitDir: true,
      link: false,
      unpack: false,
      sources: ['https://x/y.tar.gz'],
    });
    expect(parseError(lines('FROM scratch', 'ADD --from=x a b')).detail).toContain('unknown flag: from');
  });

  it('COPY/ADD need a destination', () => {
    expect(parseError(lines('FROM scratch', 'COPY a')).detail).toBe(
      'COPY requires at least two arguments, but only one was provided. Destination could not be determined',
    );
  });

  it.each([
    ['--link=maybe', 'expecting boolean value for flag link, not: maybe'],
    ['--link=', 'missing a value on flag: link'],
    ['--from', 'missing a value on flag: from'],
    ['--from=a --from=b', 'duplicate flag specified: from'],
  ])('COPY %s is rejected', (flag, message) => {
    expect(parseError(lines('FROM scratch', `COPY ${flag} a b`)).detail).toBe(message);
  });

  it('flag values may be quoted', () => {
    expect(only<CopyInstruction>('COPY --chown="a b" x y').chown).toBe('a b');
  });

  it('ENV in both syntaxes, values kept raw for expansion', () => {
    const [a, b] = body(
      'ENV PATH /usr/local/bin:$PATH  more words',
      'ENV A=1 B="two words" C=three\\ words D=',
    ) as EnvInstruction[];
    expect(a.pairs).toEqual([{ key: 'PATH', value: '/usr/local/bin:$PATH  more words' }]);
    expect(b.pairs).toEqual([
      { key: 'A', value: '1' },
      { key: 'B', value: '"two words"' },
      { key: 'C', value: 'three\\ words' },
      { key: 'D', value: '' },
    ]);
  });

  it.each([
    ['ENV', 'ENV requires at least one argument'],
    ['ENV A', 'ENV must have two arguments'],
    ['ENV A=1 B', 'Syntax error - can\'t find = in "B". Must be of the form: name=value'],
    ['ENV =1', 'ENV names can not be blank'],
    ['LABEL', 'LABEL requires at least one argument'],
  ])('%s is rejected', (line, message) => {
    expect(parseError(lines('FROM scratch', line)).detail).toBe(message);
  });

  it('LABEL pairs with quotes', () => {
    const label = only<LabelInstruction>(
      'LABEL "com.example.vendor"="ACME Inc" version=1.0 description="multi \\',
      'line"',
    );
    expect(label.labels).toEqual([
      { key: '"com.example.vendor"', value: '"ACME Inc"' },
      { key: 'version', value: '1.0' },
      { key: 'description', value: '"multi line"' },
    ]);
  });

  it('ARG: several per line, with and without defaults', () => {
    const arg = only<ArgInstruction>('ARG A B=2 C="x y" D=');
    expect(arg.args).toEqual([
      { name: 'A' },
      { name: 'B', defaultValue: '2' },
      { name: 'C', defaultValue: '"x y"' },
      { name: 'D', defaultValue: '' },
    ]);
    expect(parseError(lines('FROM scratch', 'ARG =x')).detail).toBe('ARG names can not be blank');
  });

  it('EXPOSE keeps ports as written', () => {
    expect(only<ExposeInstruction>('EXPOSE 80 53/udp 8000-8010/tcp $PORT').ports).toEqual([
      '80',
      '53/udp',
      '8000-8010/tcp',
      '$PORT',
    ]);
  });

  it('VOLUME in JSON and list form', () => {
    const [a, b] = body('VOLUME ["/data", "/var/log x"]', 'VOLUME /a /b') as VolumeInstruction[];
    expect(a.paths).toEqual(['/data', '/var/log x']);
    expect(b.paths).toEqual(['/a', '/b']);
    expect(parseError(lines('FROM scratch', 'VOLUME [""]')).detail).toBe(
      'VOLUME specified can not be an empty string',
    );
  });

  it('WORKDIR, USER, STOPSIGNAL, MAINTAINER take the rest of the line', () => {
    const ins = body('WORKDIR /a b', 'USER app:app', 'STOPSIGNAL SIGTERM', 'MAINTAINER Jane <j@x>');
    expect(ins).toEqual([
      expect.objectContaining({ kind: 'WORKDIR', path: '/a b' }),
      expect.objectContaining({ kind: 'USER', user: 'app:app' }),
      expect.objectContaining({ kind: 'STOPSIGNAL', signal: 'SIGTERM' }),
      expect.objectContaining({ kind: 'MAINTAINER', maintainer: 'Jane <j@x>' }),
    ]);
    expect(parseError(lines('FROM scratch', 'WORKDIR')).detail).toBe('WORKDIR requires exactly one argument');
  });

  it('HEALTHCHECK NONE, shell and exec forms with options', () => {
    const [none, shell, exec] = body(
      'HEALTHCHECK NONE',
      'HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1',
      'HEALTHCHECK cmd ["curl", "-f", "http://x"]',
    ) as HealthcheckInstruction[];
    expect(none.test).toEqual(['NONE']);
    expect(shell.test).toEqual(['CMD-SHELL', 'curl -f http://localhost/ || exit 1']);
    expect(shell.options).toEqual({
      intervalNs: 30e9,
      timeoutNs: 90e9,
      startPeriodNs: 500e6,
      startIntervalNs: 2e9,
      retries: 3,
    });
    expect(exec.test).toEqual(['CMD', 'curl', '-f', 'http://x']);
  });

  it.each([
    ['HEALTHCHECK NONE x', 'HEALTHCHECK NONE takes no arguments'],
    ['HEALTHCHECK CMD', 'Missing command after HEALTHCHECK CMD'],
    ['HEALTHCHECK PING x', 'Unknown type "PING" in HEALTHCHECK (try CMD)'],
    ['HEALTHCHECK --interval=10 CMD x', 'time: missing unit in duration "10"'],
    ['HEALTHCHECK --interval=1us CMD x', 'Interval "interval" cannot be less than 1ms'],
    ['HEALTHCHECK --retries=-1 CMD x', '--retries cannot be negative (-1)'],
    [
      'HEALTHCHECK --retries=99999999999 CMD x',
      'strconv.ParseInt: parsing "99999999999": value out of range',
    ],
    ['HEALTHCHECK --retries=2147483648 CMD x', 'value out of range'],
    ['HEALTHCHECK --retries=1.0 CMD x', 'strconv.ParseInt: parsing "1.0": invalid syntax'],
    ['HEALTHCHECK --bogus=1 CMD x', 'unknown flag: bogus'],
  ])('%s is rejected', (line, message) => {
    expect(parseError(lines('FROM scratch', line)).detail).toContain(message);
  });

  it('HEALTHCHECK --retries=0 is the default, accepted as BuildKit does since dockerfile 1.5', () => {
    const [zero, max, lead] = body(
      'HEALTHCHECK --retries=0 CMD x',
      'HEALTHCHECK --retries=2147483647 CMD x',
      'HEALTHCHECK --retries=007 CMD x',
    ) as HealthcheckInstruction[];
    expect(zero.options.retries).toBe(0);
    expect(max.options.retries).toBe(2147483647);
    expect(lead.options.retries).toBe(7);
  });

  it('HEALTHCHECK flags before NONE are ignored, as BuildKit never parses them', () => {
    const [a, b] = body(
      'HEALTHCHECK --interval=5s NONE',
      'HEALTHCHECK --bogus NONE',
    ) as HealthcheckInstruction[];
    expect(a.test).toEqual(['NONE']);
    expect(a.options.intervalNs).toBe(0);
    expect(b.test).toEqual(['NONE']);
  });

  it('flag values use the file escape character', () => {
    const [bs] = body('COPY --chown=a\\b --exclude=x\\y . /app') as CopyInstruction[];
    // default escape `\`: `a\b` is `ab`, as in BuildKit
    expect(bs.chown).toBe('ab');
    expect(bs.exclude).toEqual(['xy']);
    const df = parseDockerfile(
      lines(
        '# escape=`',
        'FROM scratch',
        'COPY --chown=DOMAIN\\user --exclude=c:\\tmp\\* --exclude="a``b" --exclude=sp` ace . c:\\app',
      ),
    );
    const tick = df.stages[0].instructions[0] as CopyInstruction;
    expect(tick.chown).toBe('DOMAIN\\user');
    // a backtick escape stays for the variable lexer, which takes it out once
    expect(tick.exclude).toEqual(['c:\\tmp\\*', 'a``b', 'sp` ace']);
    const expanded = expandInstruction(tick, createStageScope(planBuild(df)));
    expect(expanded.chown).toBe('DOMAIN\\user');
    expect(expanded.exclude).toEqual(['c:\\tmp\\*', 'a`b', 'sp ace']);
  });

  it('ONBUILD wraps a parsed trigger', () => {
    const ob = only<OnbuildInstruction>('ONBUILD COPY --chown=a . /app');
    expect(ob.expression).toBe('COPY --chown=a . /app');
    expect(ob.trigger).toMatchObject({ kind: 'COPY', chown: 'a', sources: ['.'], dest: '/app' });
  });

  it.each([
    ['ONBUILD COPY --bogus=1 a b', 'COPY --bogus=1 a b'],
    ['ONBUILD HEALTHCHECK --retries=-1 CMD x', 'HEALTHCHECK --retries=-1 CMD x'],
    ['ONBUILD FOO bar', 'FOO bar'],
  ])('%s is kept for the child build: BuildKit checks only the keyword', (line, expression) => {
    const ob = only<OnbuildInstruction>(line);
    expect(ob.expression).toBe(expression);
    expect(ob.trigger).toBeUndefined();
  });

  it.each([
    ['ONBUILD ONBUILD RUN x', "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"],
    ['ONBUILD FROM alpine', "FROM isn't allowed as an ONBUILD trigger"],
    ['ONBUILD MAINTAINER me', "MAINTAINER isn't allowed as an ONBUILD trigger"],
    ['ONBUILD', 'ONBUILD requires at least one argument'],
  ])('%s is rejected', (line, message) => {
    expect(parseError(lines('FROM scratch', line)).detail).toBe(message);
  });
});

describe('parseDockerfile: heredocs', () => {
  it('RUN <<EOF keeps the body with its newlines and spans the lines', () => {
    const df = parseDockerfile(
      lines('FROM scratch', 'RUN <<EOF', 'echo $HOME', '  indented', 'EOF', 'CMD x'),
    );
    const run = df.stages[0].instructions[0] as RunInstruction;
    expect(run.command).toEqual({ form: 'shell', command: '<<EOF' });
    expect(run.heredocs).toEqual([
      { name: 'EOF', fileDescriptor: 0, expand: true, chomp: false, content: 'echo $HOME\n  indented\n' },
    ]);
    expect([run.startLine, run.endLine]).toEqual([2, 5]);
    expect(run.source).toBe('RUN <<EOF\necho $HOME\n  indented\nEOF\n');
    expect(df.stages[0].instructions[1].startLine).toBe(6);
  });

  it('<<- strips leading tabs from the body and the terminator', () => {
    const run = only<RunInstruction>('RUN <<-EOT bash', '\techo a', '\t\techo b', '  echo c', '\tEOT');
    expect(run.heredocs[0]).toMatchObject({
      name: 'EOT',
      chomp: true,
      content: 'echo a\necho b\n  echo c\n',
    });
  });

  it('quoted delimiters disable expansion', () => {
    const docs = (l: string): unknown[] =>
      only<RunInstruction>(l, 'x', 'EOF').heredocs.map((h) => [h.name, h.expand]);
    expect(docs('RUN <<"EOF"')).toEqual([['EOF', false]]);
    expect(docs("RUN <<'EOF'")).toEqual([['EOF', false]]);
    expect(docs('RUN <<E"O"F')).toEqual([['EOF', false]]);
    expect(docs('RUN <<EOF')).toEqual([['EOF', true]]);
  });

  it('several heredocs on one line, with file descriptors', () => {
    const run = only<RunInstruction>(
      'RUN <<FILE1 cat > file1 && 3<<FILE2 cat > file2',
      'I am',
      'FILE1',
      'second',
      'FILE2',
    );
    expect(run.heredocs.map((h) => [h.name, h.fileDescriptor, h.content])).toEqual([
      ['FILE1', 0, 'I am\n'],
      ['FILE2', 3, 'second\n'],
    ]);
  });

  it('COPY <<EOF /dest becomes an inline source', () => {
    const copy = only<CopyInstruction>('COPY <<EOF <<"RAW" /dest/', 'hello $NAME', 'EOF', 'raw $X', 'RAW');
    expect(copy.sources).toEqual([]);
    expect(copy.dest).toBe('/dest/');
    expect(copy.inlineSources).toEqual([
      { path: 'EOF', data: 'hello $NAME\n', expand: true },
      { path: 'RAW', data: 'raw $X\n', expand: false },
    ]);
  });

  it('JSON form and other instructions do not read heredocs', () => {
    const ins = body('RUN ["cat", "<<EOF"]', 'ENV A=<<EOF', 'CMD x');
    expect(ins.map((i) => i.kind)).toEqual(['RUN', 'ENV', 'CMD']);
  });

  it('a heredoc cannot be a destination', () => {
    expect(parseError(lines('FROM scratch', 'COPY a <<EOF', 'x', 'EOF')).detail).toBe(
      'COPY cannot accept a heredoc as a destination',
    );
  });

  it('ONBUILD RUN <<EOF appends the body to the expression', () => {
    const ob = only<OnbuildInstruction>('ONBUILD RUN <<EOF', 'echo hi', 'EOF');
    expect(ob.expression).toBe('RUN <<EOF\necho hi\nEOF');
    expect((ob.trigger as RunInstruction).heredocs[0].content).toBe('echo hi\n');
  });

  it('reports a missing terminator at the instruction line', () => {
    const err = parseError(lines('FROM scratch', 'RUN echo', 'RUN <<EOF', 'echo', 'EOFX'));
    expect(err.line).toBe(3);
    expect(err.message).toContain('dockerfile parse error on line 3: unterminated heredoc');
  });
});

describe('parseDockerfile: errors carry Docker-like messages and line numbers', () => {
  it('unknown instruction', () => {
    const err = parseError(lines('FROM scratch', 'RUN a', 'RUNN b'));
    expect(err.line).toBe(3);
    expect(err.message).toMatch(/^dockerfile parse error on line 3: unknown instruction: RUNN/);
    expect(err.code).toBe('DOCKERFILE_PARSE');
  });

  it('unknown instruction after a multi-line instruction', () => {
    expect(parseError(lines('FROM scratch', 'RUN a \\', ' b \\', ' c', 'FOO x')).line).toBe(5);
  });

  it('empty file, comments only, ARG only', () => {
    expect(parseError('').detail).toBe('file with no instructions');
    expect(parseError(lines('# just a comment', '')).detail).toBe('file with no instructions');
    expect(parseError(lines('ARG A=1')).detail).toBe('dockerfile contains no stages to build');
  });

  it('instructions before the first FROM other than ARG', () => {
    const err = parseError(lines('ARG A', 'ENV B=1', 'FROM scratch'));
    expect(err.line).toBe(2);
    expect(err.detail).toContain('no build stage in current context');
  });

  it('empty continuation at EOF', () => {
    const err = parseError(lines('FROM scratch', 'RUN \\'));
    expect(err.line).toBe(2);
    expect(err.detail).toContain('line continuation');
  });

  it('RUN without a command', () => {
    expect(parseError(lines('FROM scratch', 'RUN')).detail).toBe('RUN requires at least one argument');
  });
});
