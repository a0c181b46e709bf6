// Variables visible to an instruction: ENV (base image's and the stage's), declared ARGs,
// build args, the predefined proxy args and BuildKit's automatic platform args.
// https://docs.docker.com/reference/dockerfile/#arg and #automatic-platform-args-in-the-global-scope
import { DockerfileError } from './dockerfile-error';
import { DOCKERFILE_LIMITS, LimitExceededError } from './dockerfile-limits';
import type { ArgInstruction, EnvInstruction, Instruction } from './instructions';

/** Build args Docker accepts without an ARG declaration (and never reports unused). */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
];

/** Names of BuildKit's automatic platform args. */
export const PLATFORM_ARGS: readonly string[] = [
  'TARGETPLATFORM',
  'TARGETOS',
  'TARGETARCH',
  'TARGETVARIANT',
  'BUILDPLATFORM',
  'BUILDOS',
  'BUILDARCH',
  'BUILDVARIANT',
];

/** `linux/arm64/v8` → TARGETPLATFORM/TARGETOS/TARGETARCH/TARGETVARIANT (prefix `TARGET` or `BUILD`). */
export function platformArgs(platform: string, prefix: 'TARGET' | 'BUILD'): Record<string, string> {
  const [os = 'linux', arch = 'amd64', variant = ''] = platform.split('/');
  return {
    [`${prefix}PLATFORM`]: variant ? `${os}/${arch}/${variant}` : `${os}/${arch}`,
    [`${prefix}OS`]: os,
    [`${prefix}ARCH`]: arch,
    [`${prefix}VARIANT`]: variant,
  };
}

/** What a stage scope starts from; plain data (JSON-compatible). */
export interface ScopeSeed {
  /** The Dockerfile's escape token (`# escape=`). */
  escapeToken: '\\' | '`';
  /** `--build-arg` values. */
  buildArgs: Record<string, string>;
  /** Global (pre-FROM) ARGs after resolution; undefined = declared without a value. */
  globalArgs: Record<string, string | undefined>;
  /** Automatic platform args (TARGETOS...). */
  automaticArgs: Record<string, string>;
  /** Environment of the base image (its config's Env), lowest precedence of ENV. */
  baseEnv?: Record<string, string>;
}

/**
 * The variables of one stage at one point of its instructions. Mutable: call
 * {@link ExpansionScope.apply} with each *expanded* instruction after using it.
 */
export class ExpansionScope {
  readonly escapeToken: '\\' | '`';
  private readonly env: Map<string, string>;
  private readonly args: Map<string, string | undefined>;
  /** Build args consumed by ARG declarations so far. */
  readonly consumedBuildArgs = new Set<string>();
  /** `key=value` lengths of env and args summed (kept as they change: checks stay O(1)). */
  private variablesLength = 0;
  /** Characters {@link lookup} has handed out so far (each `$VAR` substituted). */
  private substitutedLength = 0;

  constructor(private readonly seed: ScopeSeed) {
    this.escapeToken = seed.escapeToken;
    this.env = new Map();
    this.args = new Map();
    for (const [k, v] of Object.entries(seed.baseEnv ?? {})) {
      this.setEnv(k, v);
    }
  }

  private setEnv(key: string, value: string): void {
    const old = this.env.get(key);
    this.variablesLength +=
      key.length + value.length + 1 - (old === undefined ? 0 : key.length + old.length + 1);
    this.env.set(key, value);
  }

  private setArg(key: string, value: string | undefined): void {
    const size = (v: string | undefined): number => key.length + (v?.length ?? 0) + 1;
    this.variablesLength += size(value) - (this.args.has(key) ? size(this.args.get(key)) : 0);
    this.args.set(key, value);
  }

  /** Fails instruction `instr` when the stage's variables together grew too long. */
  private checkVariables(instr: Instruction): void {
    const max = DOCKERFILE_LIMITS.maxEnvironmentLength;
    if (this.variablesLength > max) {
      throw new DockerfileError(
        'DOCKERFILE_LIMIT',
        `${instr.kind}: the stage's variables (ENV and ARG, ${this.variablesLength} characters) exceed the limit maxEnvironmentLength (${max})`,
        instr.startLine,
        instr.endLine,
      );
    }
  }

  /** A scope for the global section (FROM lines): global ARGs and automatic platform args. */
  static global(seed: ScopeSeed): ExpansionScope {
    const scope = new ExpansionScope({ ...seed, baseEnv: {} });
    for (const [k, v] of Object.entries(seed.automaticArgs)) {
      scope.setArg(k, v);
    }
    for (const [k, v] of Object.entries(seed.globalArgs)) {
      scope.setArg(k, v);
    }
    return scope;
  }

  /**
   * ENV wins over ARG of the same name; undeclared proxy build args are visible too. Counts
   * what it hands out: past maxSubstitutedLength for the stage it throws LimitExceededError
   * (10,000 `LABEL x=$BIG` each under the word limit would otherwise add up to gigabytes).
   */
  lookup(name: string): string | undefined {
    const value = this.find(name);
    if (value !== undefined) {
      this.substitutedLength += value.length;
      const max = DOCKERFILE_LIMITS.maxSubstitutedLength;
      if (this.substitutedLength > max) {
        throw new LimitExceededError(
          'maxSubstitutedLength',
          max,
          `variables substituted in this stage (${this.substitutedLength} characters)`,
        );
      }
    }
    return value;
  }

  private find(name: string): string | undefined {
    const env = this.env.get(name);
    if (env !== undefined) {
      return env;
    }
    if (this.args.has(name)) {
      return this.args.get(name);
    }
    if (PROXY_ARGS.includes(name)) {
      return this.seed.buildArgs[name];
    }
    return undefined;
  }

  /** Copy, for trying an expansion without committing it. */
  clone(): ExpansionScope {
    const copy = new ExpansionScope(this.seed);
    copy.env.clear();
    copy.variablesLength = 0;
    for (const [k, v] of this.env) {
      copy.setEnv(k, v);
    }
    for (const [k, v] of this.args) {
      copy.setArg(k, v);
    }
    copy.substitutedLength = this.substitutedLength;
    for (const k of this.consumedBuildArgs) {
      copy.consumedBuildArgs.add(k);
    }
    return copy;
  }

  /**
   * Records the effect of an already-expanded ENV or ARG; other instructions change nothing.
   *
   * @throws {DockerfileError} `DOCKERFILE_LIMIT` (with the instruction's line) when the
   *   stage's variables exceed maxEnvironmentLength.
   */
  apply(instr: Instruction): void {
    if (instr.kind === 'ENV') {
      this.applyEnv(instr);
      this.checkVariables(instr);
    } else if (instr.kind === 'ARG') {
      this.applyArg(instr);
      this.checkVariables(instr);
    }
  }

  private applyEnv(instr: EnvInstruction): void {
    for (const { key, value } of instr.pairs) {
      this.setEnv(key, value);
    }
  }

  private applyArg(instr: ArgInstruction): void {
    // BuildKit dispatchArg: build arg > own default > global default > automatic platform arg.
    for (const { name, defaultValue } of instr.args) {
      let value: string | undefined;
      if (Object.prototype.hasOwnProperty.call(this.seed.buildArgs, name)) {
        value = this.seed.buildArgs[name];
        this.consumedBuildArgs.add(name);
      } else if (defaultValue !== undefined) {
        value = defaultValue;
      } else if (Object.prototype.hasOwnProperty.call(this.seed.globalArgs, name)) {
        value = this.seed.globalArgs[name];
      } else {
        value = this.seed.automaticArgs[name];
      }
      this.setArg(name, value);
    }
  }

  /** Environment of a RUN: ENV, plus declared ARGs with a value, plus given proxy args. */
  runEnvironment(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of PROXY_ARGS) {
      const v = this.seed.buildArgs[name];
      if (v !== undefined) {
        out[name] = v;
      }
    }
    for (const [k, v] of this.args) {
      if (v !== undefined) {
        out[k] = v;
      }
    }
    for (const [k, v] of this.env) {
      out[k] = v;
    }
    return out;
  }

  /** The ENV part only (what goes into the image config). */
  environment(): Record<string, string> {
    return Object.fromEntries(this.env);
  }
}
