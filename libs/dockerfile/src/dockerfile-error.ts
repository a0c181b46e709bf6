/** Machine-readable reason of a {@link DockerfileError}. */
export type DockerfileErrorCode =
  /** The text is not a valid Dockerfile (syntax, unknown instruction, bad flag...). */
  | 'DOCKERFILE_PARSE'
  /** Variable expansion failed (`${VAR:?msg}`, unterminated quote, bad substitution). */
  | 'DOCKERFILE_EXPANSION'
  /** The stage graph cannot be built (unknown target, `--from` a later stage...). */
  | 'DOCKERFILE_PLAN'
  /** Over one of the DOCKERFILE_LIMITS (line, instruction or word size, counts); names the limit. */
  | 'DOCKERFILE_LIMIT';

/**
 * The one error type of `@stratum/dockerfile`. A bad Dockerfile must not be retried:
 * processors map it to BullMQ's `UnrecoverableError`.
 *
 * `message` reads like BuildKit's (`dockerfile parse error on line 3: unknown instruction: RUNN`);
 * `detail` is the same text without the location prefix.
 */
export class DockerfileError extends Error {
  override readonly name = 'DockerfileError';

  constructor(
    readonly code: DockerfileErrorCode,
    readonly detail: string,
    /** 1-based line where the offending instruction starts; undefined when not tied to a line. */
    readonly line: number | undefined,
    /** 1-based last line of the offending instruction, when known. */
    readonly endLine: number | undefined = line,
  ) {
    super(DockerfileError.format(code, detail, line));
  }

  private static format(code: DockerfileErrorCode, detail: string, line: number | undefined): string {
    if (line === undefined) {
      return detail;
    }
    const what = code === 'DOCKERFILE_PARSE' ? 'dockerfile parse error' : 'dockerfile error';
    return `${what} on line ${line}: ${detail}`;
  }
}
