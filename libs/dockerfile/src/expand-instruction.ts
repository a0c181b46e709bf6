// Builder-side variable expansion of one instruction, as BuildKit's dispatcher does it
// before executing it: which fields are expanded and whether as one word (ProcessWord)
// or as a list of words (ProcessWords). RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands are
// left alone: the shell in the container expands them.
// https://docs.docker.com/reference/dockerfile/#environment-replacement
import { DockerfileError } from './dockerfile-error';
import { DOCKERFILE_LIMITS, LimitExceededError } from './dockerfile-limits';
import type { ExpansionScope } from './expansion-scope';
import type { Instruction } from './instructions';
import { parseMount } from './run-mount';
import { ShellLex, ShellLexError } from './shell-lex';

/**
 * Returns a copy of `instr` with its words expanded against `scope`: quotes removed and
 * `$VAR` references substituted for ADD, COPY, ENV, ARG, EXPOSE, FROM, LABEL, STOPSIGNAL,
 * USER, VOLUME, WORKDIR and RUN `--mount` options; COPY heredoc bodies when their
 * delimiter was unquoted. Does not modify `scope`: call `scope.apply(result)` afterwards.
 *
 * @throws {DockerfileError} code `DOCKERFILE_EXPANSION` with the instruction's line
 *   (`${VAR:?message}`, unterminated quotes, bad substitutions, empty results that
 *   Docker rejects); `DOCKERFILE_LIMIT` when a word grows past maxExpandedWordLength (a
 *   heredoc body past maxExpandedHeredocLength) or the stage's substitutions past
 *   maxSubstitutedLength.
 */
export function expandInstruction<T extends Instruction>(instr: T, scope: ExpansionScope): T {
  const lex = new ShellLex({
    escapeToken: scope.escapeToken,
    maxLength: { length: DOCKERFILE_LIMITS.maxExpandedWordLength, name: 'maxExpandedWordLength' },
    maxPatternWork: { work: DOCKERFILE_LIMITS.maxPatternWork, name: 'maxPatternWork' },
  });
  const lookup = (name: string): string | undefined => scope.lookup(name);
  const fail = (detail: string): never => {
    throw new DockerfileError('DOCKERFILE_EXPANSION', detail, instr.startLine, instr.endLine);
  };
  const guard = <R>(fn: () => R): R => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof LimitExceededError) {
        throw new DockerfileError('DOCKERFILE_LIMIT', err.message, instr.startLine, instr.endLine);
      }
      if (err instanceof ShellLexError || (err instanceof Error && !(err instanceof DockerfileError))) {
        return fail(err.message);
      }
      throw err;
    }
  };
  const word = (w: string): string => guard(() => lex.processWord(w, lookup));
  const words = (w: string): string[] => guard(() => lex.processWords(w, lookup));
  const opt = (w: string | undefined): string | undefined => (w === undefined ? undefined : word(w));

  const i = instr;
  let out: Instruction;
  switch (i.kind) {
    case 'FROM': {
      const image = word(i.image);
      if (image === '') {
        fail(`base name (${i.image}) should not be blank`);
      }
      out = { ...i, image, ...(i.platform !== undefined ? { platform: word(i.platform) } : {}) };
      break;
    }
    case 'ENV':
      out = { ...i, pairs: i.pairs.map((p) => ({ key: word(p.key), value: word(p.value) })) };
      break;
    case 'LABEL':
      out = { ...i, labels: i.labels.map((p) => ({ key: word(p.key), value: word(p.value) })) };
      break;
    case 'ARG':
      out = {
        ...i,
        args: i.args.map((a) =>
          a.defaultValue === undefined
            ? { name: word(a.name) }
            : { name: word(a.name), defaultValue: word(a.defaultValue) },
        ),
      };
      break;
    case 'COPY':
    case 'ADD': {
      const skipQuotes = new ShellLex({
        escapeToken: '\\',
        skipProcessQuotes: true,
        maxLength: { length: DOCKERFILE_LIMITS.maxExpandedHeredocLength, name: 'maxExpandedHeredocLength' },
        maxPatternWork: { work: DOCKERFILE_LIMITS.maxPatternWork, name: 'maxPatternWork' },
      });
      const common = {
        sources: i.sources.map(word),
        dest: word(i.dest),
        exclude: i.exclude.map(word),
        inlineSources: i.inlineSources.map((s) =>
          s.expand ? { ...s, data: guard(() => skipQuotes.processWord(s.data, lookup)) } : s,
        ),
        ...(i.chown !== undefined ? { chown: opt(i.chown) } : {}),
        ...(i.chmod !== undefined ? { chmod: opt(i.chmod) } : {}),
      };
      if (i.kind === 'COPY') {
        out = { ...i, ...common, ...(i.from !== undefined ? { from: word(i.from) } : {}) };
      } else {
        out = { ...i, ...common, ...(i.checksum !== undefined ? { checksum: word(i.checksum) } : {}) };
      }
      break;
    }
    case 'EXPOSE':
      out = { ...i, ports: i.ports.flatMap(words) };
      break;
    case 'VOLUME': {
      const paths = i.paths.map(word);
      if (paths.some((p) => p.trim() === '')) {
        fail('VOLUME specified can not be an empty string');
      }
      out = { ...i, paths };
      break;
    }
    case 'WORKDIR':
      out = { ...i, path: word(i.path) };
      break;
    case 'USER':
      out = { ...i, user: word(i.user) };
      break;
    case 'STOPSIGNAL':
      out = { ...i, signal: word(i.signal) };
      break;
    case 'RUN':
      out = { ...i, mounts: i.mounts.map((m) => guard(() => parseMount(m.raw, word))) };
      break;
    case 'CMD':
    case 'ENTRYPOINT':
    case 'SHELL':
    case 'HEALTHCHECK':
    case 'ONBUILD':
    case 'MAINTAINER':
      out = i;
      break;
  }
  return out as T;
}
