// Bounds on what one Dockerfile (or one set of commit changes) may make the builder hold.
// A few hundred bytes of `ENV A=$A$A` repeated forty times ask for 2^40 characters: without
// these a worker's heap (and then the next worker's) is the only limit. Each bound is far
// above what a real Dockerfile needs; exceeding one is a DockerfileError with code
// DOCKERFILE_LIMIT, the line, and the limit's name.

/** The limits of {@link DOCKERFILE_LIMITS}; every size is in UTF-16 code units (JS string length). */
export interface DockerfileLimits {
  /** Whole Dockerfile text. */
  readonly maxDockerfileLength: number;
  /** One physical line: BuildKit's scanner refuses lines over 64 KiB (bufio.MaxScanTokenSize). */
  readonly maxLineLength: number;
  /** One instruction with its continuation lines and heredoc bodies. */
  readonly maxInstructionLength: number;
  /** Instructions in the file (FROM and global ARGs included). */
  readonly maxInstructions: number;
  /** Build stages (FROM lines). */
  readonly maxStages: number;
  /** ARG declarations in the file (global and all stages), and `--build-arg` values given. */
  readonly maxArgs: number;
  /** ENV and LABEL key=value entries in the file. */
  readonly maxKeyValueEntries: number;
  /**
   * One expanded word (an ENV value, a LABEL, a COPY source...). Linux refuses a single
   * environment string over 128 KiB (MAX_ARG_STRLEN) at execve, so a longer ENV could never
   * reach a RUN anyway.
   */
  readonly maxExpandedWordLength: number;
  /**
   * One expanded heredoc body (COPY <<EOF with an unquoted delimiter): a file's content, so
   * allowed to be as long as an instruction.
   */
  readonly maxExpandedHeredocLength: number;
  /**
   * The variables of one stage (ENV and ARG, `key=value` summed): half of Linux's usual
   * ARG_MAX (2 MiB for argv + envp), leaving room for the RUN command itself.
   */
  readonly maxEnvironmentLength: number;
  /** Text substituted for `$VAR` references in one stage, summed: bounds LABEL/ENV fan-out. */
  readonly maxSubstitutedLength: number;
  /**
   * Characters one `${VAR#glob}`, `${VAR%glob}` or `${VAR/glob/x}` may scan (it tries every
   * prefix or suffix): about a second of CPU; a 4,000-character value always fits.
   */
  readonly maxPatternWork: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** The limits every parse, plan and expansion applies. */
export const DOCKERFILE_LIMITS: DockerfileLimits = Object.freeze({
  maxDockerfileLength: 16 * MiB,
  maxLineLength: 64 * KiB,
  maxInstructionLength: 1 * MiB,
  maxInstructions: 20_000,
  maxStages: 500,
  maxArgs: 1_000,
  maxKeyValueEntries: 20_000,
  maxExpandedWordLength: 128 * KiB,
  maxExpandedHeredocLength: 1 * MiB,
  maxEnvironmentLength: 1 * MiB,
  maxSubstitutedLength: 16 * MiB,
  maxPatternWork: 16_000_000,
});

/**
 * Thrown where no Dockerfile line is known (the lexer, a scope lookup); `expandInstruction`
 * and the parser turn it into a DockerfileError `DOCKERFILE_LIMIT` with the instruction's line.
 */
export class LimitExceededError extends Error {
  override readonly name = 'LimitExceededError';

  constructor(
    /** The limit's name, e.g. `maxExpandedWordLength`. */
    readonly limit: string,
    readonly max: number,
    /** What was too big, e.g. `expanded word`. */
    what: string,
  ) {
    super(`${what} exceeds the limit ${limit} (${max})`);
  }
}
