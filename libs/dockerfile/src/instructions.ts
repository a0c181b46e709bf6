// Typed Dockerfile instructions. Values are kept as written (quotes, escapes and $VAR
// references intact) — exactly what BuildKit's instructions package holds before
// dispatch; `expandInstruction` turns them into what the builder uses.
// Reference: https://docs.docker.com/reference/dockerfile/

/** A heredoc body attached to RUN / COPY / ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`). */
export interface Heredoc {
  /** The delimiter word with quotes removed (`EOF`). */
  name: string;
  /** File descriptor prefix (`3<<EOF`); 0 when none was written. */
  fileDescriptor: number;
  /** False when any part of the delimiter was quoted: the body is then taken literally. */
  expand: boolean;
  /** `<<-`: leading tabs were stripped from each body line and from the terminator. */
  chomp: boolean;
  /** The body, each line ending in a newline, leading tabs already removed when `chomp`. */
  content: string;
}

/** A RUN/CMD/ENTRYPOINT/HEALTHCHECK command in exec (JSON) or shell form. */
export type CommandLine =
  | { form: 'exec'; args: string[] }
  /** Shell form: run as `SHELL + [command]` (default `/bin/sh -c`). */
  | { form: 'shell'; command: string };

/** A `--flag[=value]` word as written before the arguments. */
export interface RawFlag {
  name: string;
  /** Undefined for a bare `--flag`. */
  value: string | undefined;
}

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type CacheSharing = 'shared' | 'private' | 'locked';

/** One `RUN --mount=...`. See https://docs.docker.com/reference/dockerfile/#run---mount */
export interface Mount {
  type: MountType;
  target?: string;
  source?: string;
  /** Stage name, stage index or image to mount from (bind/cache). */
  from?: string;
  readOnly: boolean;
  /** cache id, secret id or ssh id. */
  id?: string;
  /** Cache sharing mode; defaults to `shared` for cache mounts. */
  sharing?: CacheSharing;
  /** secret/ssh: fail when the secret is not provided. */
  required: boolean;
  /** File mode (octal in the Dockerfile) for secret/ssh/cache mounts. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** tmpfs size in bytes. */
  size?: number;
  /** secret: also expose as this environment variable. */
  env?: string;
  /** The flag value as written, e.g. `type=cache,target=/root/.cache`. */
  raw: string;
}

export type NetworkMode = 'default' | 'none' | 'host';
export type SecurityMode = 'sandbox' | 'insecure';

/** Fields every instruction carries. */
export interface InstructionBase {
  /** Instruction keyword as written (`run`, `Copy`...). */
  keyword: string;
  /** 1-based line of the keyword. */
  startLine: number;
  /** 1-based last line (continuations and heredoc bodies included). */
  endLine: number;
  /** The logical line after joining continuations and dropping comment lines (BuildKit's Original). */
  original: string;
  /** The exact source text of lines startLine..endLine. */
  source: string;
  /** Flags as written, in order. */
  flags: RawFlag[];
}

export interface FromInstruction extends InstructionBase {
  kind: 'FROM';
  /** Image reference, `scratch`, or the name of an earlier stage (may contain $VAR). */
  image: string;
  /** `AS name`, lower-cased as BuildKit does. */
  name?: string;
  /** `--platform=` value. */
  platform?: string;
}

export interface RunInstruction extends InstructionBase {
  kind: 'RUN';
  command: CommandLine;
  mounts: Mount[];
  network?: NetworkMode;
  security?: SecurityMode;
  heredocs: Heredoc[];
}

export interface CmdInstruction extends InstructionBase {
  kind: 'CMD';
  command: CommandLine;
}

export interface EntrypointInstruction extends InstructionBase {
  kind: 'ENTRYPOINT';
  command: CommandLine;
}

export interface ShellInstruction extends InstructionBase {
  kind: 'SHELL';
  shell: string[];
}

/** A heredoc used as a COPY/ADD source: a file named `path` holding `data`. */
export interface InlineSource {
  path: string;
  data: string;
  /** Whether $VAR references in `data` are expanded (unquoted delimiter). */
  expand: boolean;
}

interface CopyLike extends InstructionBase {
  /** Source paths / URLs (heredoc sources excluded). */
  sources: string[];
  /** Heredoc sources, in order. */
  inlineSources: InlineSource[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  /** `--exclude=` patterns. */
  exclude: string[];
  /** Arguments were given in JSON form. */
  json: boolean;
  heredocs: Heredoc[];
}

export interface CopyInstruction extends CopyLike {
  kind: 'COPY';
  /** `--from=` stage name, stage index or image. */
  from?: string;
  /** `--parents`. */
  parents: boolean;
}

export interface AddInstruction extends CopyLike {
  kind: 'ADD';
  /** `--checksum=` for remote sources. */
  checksum?: string;
  /** `--keep-git-dir`. */
  keepGitDir: boolean;
  /** `--unpack`; undefined means the default (unpack local archives). */
  unpack?: boolean;
}

/** A `key=value` pair of ENV or LABEL. */
export interface KeyValue {
  key: string;
  value: string;
}

export interface EnvInstruction extends InstructionBase {
  kind: 'ENV';
  pairs: KeyValue[];
}

export interface LabelInstruction extends InstructionBase {
  kind: 'LABEL';
  labels: KeyValue[];
}

export interface ArgDeclaration {
  name: string;
  /** Undefined for `ARG NAME` without `=`. */
  defaultValue?: string;
}

export interface ArgInstruction extends InstructionBase {
  kind: 'ARG';
  args: ArgDeclaration[];
}

export interface ExposeInstruction extends InstructionBase {
  kind: 'EXPOSE';
  /** As written: `80`, `53/udp`, `8000-8010/tcp`. */
  ports: string[];
}

export interface VolumeInstruction extends InstructionBase {
  kind: 'VOLUME';
  paths: string[];
}

export interface WorkdirInstruction extends InstructionBase {
  kind: 'WORKDIR';
  path: string;
}

export interface UserInstruction extends InstructionBase {
  kind: 'USER';
  /** `user`, `user:group`, `uid:gid`. */
  user: string;
}

/** HEALTHCHECK options; durations in nanoseconds as in the image config, 0 = inherit. */
export interface HealthcheckOptions {
  intervalNs: number;
  timeoutNs: number;
  startPeriodNs: number;
  startIntervalNs: number;
  /** 0 = inherit. */
  retries: number;
}

export interface HealthcheckInstruction extends InstructionBase {
  kind: 'HEALTHCHECK';
  /**
   * Docker's `Healthcheck.Test`: `['NONE']`, `['CMD', ...args]` (exec form) or
   * `['CMD-SHELL', command]` (shell form).
   */
  test: string[];
  /** Undefined for `HEALTHCHECK NONE`. */
  command?: CommandLine;
  options: HealthcheckOptions;
}

export interface StopSignalInstruction extends InstructionBase {
  kind: 'STOPSIGNAL';
  signal: string;
}

export interface OnbuildInstruction extends InstructionBase {
  kind: 'ONBUILD';
  /** The trigger as stored in the image config (`RUN echo hi`), heredoc bodies appended. */
  expression: string;
  /**
   * The trigger, parsed; undefined when it does not parse (bad flags, an unknown keyword):
   * kept as BuildKit keeps it, failing only in a child build that runs it.
   */
  trigger?: Instruction;
}

export interface MaintainerInstruction extends InstructionBase {
  kind: 'MAINTAINER';
  maintainer: string;
}

/** Any Dockerfile instruction; switch on `kind`. */
export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | ShellInstruction
  | CopyInstruction
  | AddInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | ExposeInstruction
  | VolumeInstruction
  | WorkdirInstruction
  | UserInstruction
  | HealthcheckInstruction
  | StopSignalInstruction
  | OnbuildInstruction
  | MaintainerInstruction;

export type InstructionKind = Instruction['kind'];

/** Every instruction keyword, upper case. */
export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  'FROM',
  'RUN',
  'CMD',
  'ENTRYPOINT',
  'SHELL',
  'COPY',
  'ADD',
  'ENV',
  'LABEL',
  'ARG',
  'EXPOSE',
  'VOLUME',
  'WORKDIR',
  'USER',
  'HEALTHCHECK',
  'STOPSIGNAL',
  'ONBUILD',
  'MAINTAINER',
];

/** Parser directives found at the top of the file. */
export interface ParserDirectives {
  /** `# syntax=` frontend image, if any. */
  syntax?: string;
  /** `# escape=`: `\` (default) or `` ` ``. */
  escape: '\\' | '`';
  /** `# check=` lint configuration, if any. */
  check?: string;
}

/** A build stage: its FROM and the instructions up to the next FROM. */
export interface Stage {
  /** 0-based position, usable in `COPY --from=<index>`. */
  index: number;
  /** Lower-cased `AS` name, if any. */
  name?: string;
  from: FromInstruction;
  instructions: Instruction[];
}

/** A parsed Dockerfile. */
export interface Dockerfile {
  directives: ParserDirectives;
  /** ARG instructions before the first FROM (global scope, usable in FROM lines). */
  globalArgs: ArgInstruction[];
  stages: Stage[];
  /** Every instruction in file order, global ARGs and FROMs included. */
  instructions: Instruction[];
  /** Non-fatal findings, like BuildKit's (empty continuation lines, legacy `ENV k v`...). */
  warnings: ParseWarning[];
}

export interface ParseWarning {
  line: number;
  message: string;
}
