// Build checks: BuildKit's Dockerfile lint rules, run over a parsed file without building.
// Rule names, messages and URLs are BuildKit's (frontend/dockerfile/linter/ruleset.go), so a
// warning reads the same here as in `docker build --check`.
// https://docs.docker.com/reference/build-checks/
import { tryParseReference } from '@stratum/oci';
import { createStageScope, planBuild, type BuildPlan } from './build-planner';
import { closestName } from './closest-name';
import type { Dockerignore } from '@stratum/context';
import { DockerfileError } from './dockerfile-error';
import { parseDockerfile, parseWords } from './dockerfile-parser';
import { expandInstruction } from './expand-instruction';
import { ExpansionScope, PLATFORM_ARGS, PROXY_ARGS } from './expansion-scope';
import type { Dockerfile, FromInstruction, Instruction, Stage } from './instructions';
import { ShellLex } from './shell-lex';

/** One rule: BuildKit's name, description and documentation page. */
export interface CheckRule {
  readonly name: string;
  readonly description: string;
  readonly url: string;
}

const rule = (name: string, description: string, slug: string): CheckRule => ({
  name,
  description,
  url: `https://docs.docker.com/go/dockerfile/rule/${slug}/`,
});

/** The rules {@link checkDockerfile} runs, by name. */
export const CHECK_RULES = {
  StageNameCasing: rule('StageNameCasing', 'Stage names should be lowercase', 'stage-name-casing'),
  FromAsCasing: rule(
    'FromAsCasing',
    "The 'as' keyword should match the case of the 'from' keyword",
    'from-as-casing',
  ),
  NoEmptyContinuation: rule(
    'NoEmptyContinuation',
    'Empty continuation lines will become errors in a future release',
    'no-empty-continuation',
  ),
  ConsistentInstructionCasing: rule(
    'ConsistentInstructionCasing',
    'All commands within the Dockerfile should use the same casing (either upper or lower)',
    'consistent-instruction-casing',
  ),
  DuplicateStageName: rule('DuplicateStageName', 'Stage names should be unique', 'duplicate-stage-name'),
  ReservedStageName: rule(
    'ReservedStageName',
    'Reserved words should not be used as stage names',
    'reserved-stage-name',
  ),
  JSONArgsRecommended: rule(
    'JSONArgsRecommended',
    'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals',
    'json-args-recommended',
  ),
  MaintainerDeprecated: rule(
    'MaintainerDeprecated',
    'The MAINTAINER instruction is deprecated, use a label instead to define an image author',
    'maintainer-deprecated',
  ),
  UndefinedArgInFrom: rule(
    'UndefinedArgInFrom',
    'FROM command must use declared ARGs',
    'undefined-arg-in-from',
  ),
  WorkdirRelativePath: rule(
    'WorkdirRelativePath',
    'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes',
    'workdir-relative-path',
  ),
  UndefinedVar: rule('UndefinedVar', 'Variables should be defined before their use', 'undefined-var'),
  MultipleInstructionsDisallowed: rule(
    'MultipleInstructionsDisallowed',
    'Multiple instructions of the same type should not be used in the same stage',
    'multiple-instructions-disallowed',
  ),
  LegacyKeyValueFormat: rule(
    'LegacyKeyValueFormat',
    'Legacy key/value format with whitespace separator should not be used',
    'legacy-key-value-format',
  ),
  RedundantTargetPlatform: rule(
    'RedundantTargetPlatform',
    'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
    'redundant-target-platform',
  ),
  SecretsUsedInArgOrEnv: rule(
    'SecretsUsedInArgOrEnv',
    'Sensitive data should not be used in the ARG or ENV commands',
    'secrets-used-in-arg-or-env',
  ),
  InvalidDefaultArgInFrom: rule(
    'InvalidDefaultArgInFrom',
    'Default value for global ARG results in an empty or invalid base image name',
    'invalid-default-arg-in-from',
  ),
  FromPlatformFlagConstDisallowed: rule(
    'FromPlatformFlagConstDisallowed',
    'FROM --platform flag should not use a constant value',
    'from-platform-flag-const-disallowed',
  ),
  InvalidBaseImagePlatform: rule(
    'InvalidBaseImagePlatform',
    'Base image platform does not match expected target platform',
    'invalid-base-image-platform',
  ),
  CopyIgnoredFile: rule(
    'CopyIgnoredFile',
    'Attempting to Copy file that is excluded by .dockerignore',
    'copy-ignored-file',
  ),
} as const satisfies Record<string, CheckRule>;

/**
 * Rules BuildKit runs only when `# check=experimental=<rule>` (or `experimental=all`) asks for
 * them (linter.Rule.Experimental).
 */
export const EXPERIMENTAL_CHECK_RULES: readonly string[] = ['CopyIgnoredFile'];

export type CheckRuleName = keyof typeof CHECK_RULES;

/** One finding, at the instruction's lines. */
export interface CheckWarning {
  readonly rule: CheckRuleName;
  readonly message: string;
  readonly description: string;
  readonly url: string;
  /** 1-based first and last line of the instruction. */
  readonly line: number;
  readonly endLine: number;
}

/** `# check=skip=A,B;error=true` (or the BUILDKIT_DOCKERFILE_CHECK build arg, which wins). */
export interface CheckConfig {
  readonly skip: readonly string[];
  readonly skipAll: boolean;
  /** `experimental=A,B` (or `all`): experimental rules to run as well. */
  readonly experimental: readonly string[];
  readonly experimentalAll: boolean;
  /** Warnings fail the build (and a `--check` run). */
  readonly error: boolean;
}

/** Build arg that overrides the `# check=` directive, as in BuildKit. */
export const CHECK_BUILD_ARG = 'BUILDKIT_DOCKERFILE_CHECK';

/**
 * Parses a `check` directive value the way BuildKit's linter.ParseLintOptions does.
 *
 * @throws {DockerfileError} `DOCKERFILE_PARSE` for an unknown option or a bad `error=` value.
 */
export function parseCheckConfig(value: string | undefined, line?: number): CheckConfig {
  const text = (value ?? '').trim();
  let skip: string[] = [];
  let skipAll = false;
  let error = false;
  let experimental: string[] = [];
  let experimentalAll = false;
  if (text === '') {
    return { skip, skipAll, error, experimental, experimentalAll };
  }
  const bad = (msg: string): never => {
    throw new DockerfileError('DOCKERFILE_PARSE', msg, line);
  };
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      bad(`invalid check option "${part}"`);
    }
    const key = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (key === 'skip') {
      if (v === 'all') {
        skipAll = true;
      } else {
        skip = v.split(',').map((r) => r.trim());
      }
    } else if (key === 'experimental') {
      if (v === 'all') {
        experimentalAll = true;
      } else {
        experimental = v.split(',').map((r) => r.trim());
      }
    } else if (key === 'error') {
      // Go's strconv.ParseBool
      if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) {
        error = true;
      } else if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) {
        error = false;
      } else {
        bad(`failed to parse check option "${part}": strconv.ParseBool: parsing "${v}": invalid syntax`);
      }
    } else {
      bad(`invalid check option "${key}"`);
    }
  }
  return { skip, skipAll, error, experimental, experimentalAll };
}

/** Whether `config` reports `rule`: not skipped, and asked for when experimental. */
export function checkRuleEnabled(config: CheckConfig, rule: CheckRuleName): boolean {
  if (config.skipAll || config.skip.includes(rule)) {
    return false;
  }
  return (
    !EXPERIMENTAL_CHECK_RULES.includes(rule) || config.experimentalAll || config.experimental.includes(rule)
  );
}

/** A finding of `rule` at `line` (a check the builder makes while building, as InvalidBaseImagePlatform). */
export function checkWarning(rule: CheckRuleName, message: string, line: number): CheckWarning {
  const r = CHECK_RULES[rule];
  return { rule, message, description: r.description, url: r.url, line, endLine: line };
}

export interface CheckOptions {
  /** `--build-arg` values (`BUILDKIT_DOCKERFILE_CHECK` among them overrides the directive). */
  buildArgs?: Record<string, string>;
  /** Stage to check up to, as a build would; every stage when unset. */
  target?: string;
  /**
   * Environment variable names a base image defines (its config's Env), when known: a
   * reference to one is not an undefined variable. `PATH` is always assumed.
   */
  baseImageEnv?: (ref: string) => readonly string[] | undefined;
  /**
   * The build context's .dockerignore, when the caller has the context: COPY/ADD sources it
   * excludes are reported (CopyIgnoredFile, experimental). Without it that rule finds nothing.
   */
  dockerignore?: Dockerignore;
}

export interface CheckResult {
  /** Findings, by line, skipped rules left out. */
  readonly warnings: CheckWarning[];
  readonly config: CheckConfig;
  /**
   * With `error=true` and at least one warning: BuildKit's error text
   * (`lint violation found for rules: A, B`); undefined otherwise.
   */
  readonly error?: string;
}

/**
 * Runs BuildKit's build checks over Dockerfile `text` without building: parse, plan (FROM
 * lines expanded with global ARGs), then each stage's instructions expanded in order.
 *
 * @throws {DockerfileError} when the file does not parse or plan (the build would fail the same way).
 */
export function checkDockerfile(text: string, options: CheckOptions = {}): CheckResult {
  const df = parseDockerfile(text, { allowDuplicateStageNames: true });
  const checkLine = directiveLine(text, 'check');
  const override = options.buildArgs?.[CHECK_BUILD_ARG];
  const config = parseCheckConfig(
    override ?? df.directives.check,
    override === undefined ? checkLine : undefined,
  );
  const all = collectWarnings(df, options);
  const warnings = all.filter((w) => checkRuleEnabled(config, w.rule));
  warnings.sort((a, b) => a.line - b.line || a.rule.localeCompare(b.rule));
  const rules = [...new Set(warnings.map((w) => w.rule))];
  return {
    warnings,
    config,
    ...(config.error && rules.length > 0
      ? { error: `lint violation found for rules: ${rules.join(', ')}` }
      : {}),
  };
}

/** `JSONArgsRecommended: JSON arguments … (line 3)`: BuildKit's one-line form (LintFormatShort). */
export function formatCheckWarning(w: CheckWarning): string {
  return `${w.rule}: ${w.message} (line ${w.line})`;
}

function directiveLine(text: string, key: string): number | undefined {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && i < 50; i++) {
    if (new RegExp(`^#\\s*${key}\\s*=`, 'i').test((lines[i] ?? '').replace(/^\uFEFF/, '').trim())) {
      return i + 1;
    }
  }
  return undefined;
}

const SECRET_KEY =
  /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const SECRET_ALLOW = /(?:_|^)(?:public)(?:_|$)/i;
const RESERVED_STAGE_NAMES = ['context', 'scratch'];
const VAR_REF = /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))/g;
/** `${NAME-…}`, `${NAME:-…}`, `${NAME+…}`, `${NAME:+…}`, `${NAME?…}`, `${NAME:?…}`: unset is handled. */
const VAR_WITH_DEFAULT = /\$\{([A-Za-z_][A-Za-z0-9_]*):?[-+?]/g;

function collectWarnings(df: Dockerfile, options: CheckOptions): CheckWarning[] {
  const out: CheckWarning[] = [];
  const warn = (
    name: CheckRuleName,
    message: string,
    instr: { startLine: number; endLine: number },
  ): void => {
    const r = CHECK_RULES[name];
    out.push({
      rule: name,
      message,
      description: r.description,
      url: r.url,
      line: instr.startLine,
      endLine: instr.endLine,
    });
  };

  for (const w of df.warnings) {
    if (w.message.startsWith('Empty continuation line')) {
      out.push({
        rule: 'NoEmptyContinuation',
        message: 'Empty continuation line',
        description: CHECK_RULES.NoEmptyContinuation.description,
        url: CHECK_RULES.NoEmptyContinuation.url,
        line: w.line,
        endLine: w.line,
      });
    }
  }

  // Casing of instruction keywords across the file (ONBUILD triggers included).
  const keywords: { keyword: string; instr: Instruction }[] = [];
  for (const instr of df.instructions) {
    keywords.push({ keyword: instr.keyword, instr });
    if (instr.kind === 'ONBUILD') {
      const trigger = instr.expression.trim().split(/\s+/)[0] ?? '';
      keywords.push({ keyword: trigger, instr });
    }
  }
  const upper = keywords.filter((k) => k.keyword === k.keyword.toUpperCase()).length;
  const lower = keywords.filter((k) => k.keyword === k.keyword.toLowerCase()).length;
  const majorityLower = lower > upper;
  for (const k of keywords) {
    const ok = majorityLower ? k.keyword === k.keyword.toLowerCase() : k.keyword === k.keyword.toUpperCase();
    if (!ok) {
      warn(
        'ConsistentInstructionCasing',
        `Command '${k.keyword}' should match the case of the command majority (${majorityLower ? 'lowercase' : 'uppercase'})`,
        k.instr,
      );
    }
  }

  // Global ARGs: declared names, secrets, defaults.
  const globalDeclared = new Set<string>();
  const globalDefaults: Record<string, string | undefined> = {};
  for (const arg of df.globalArgs) {
    for (const a of arg.args) {
      globalDeclared.add(a.name);
      globalDefaults[a.name] = a.defaultValue;
      if (isSecretKey(a.name)) {
        warn('SecretsUsedInArgOrEnv', secretMessage('ARG', a.name), arg);
      }
    }
  }

  // Stages: names, FROM arguments.
  const seen = new Set<string>();
  for (const stage of df.stages) {
    const from = stage.from;
    const words = fromWords(from);
    if (words.length === 3) {
      const [, as = '', rawName = ''] = words;
      const name = rawName.toLowerCase();
      if (rawName !== name) {
        warn('StageNameCasing', `Stage name '${rawName}' should be lowercase`, from);
      }
      const fromKw = from.keyword;
      if (
        (fromKw === fromKw.toUpperCase() && as !== as.toUpperCase()) ||
        (fromKw === fromKw.toLowerCase() && as !== as.toLowerCase())
      ) {
        warn('FromAsCasing', `'${as}' and '${fromKw}' keywords' casing do not match`, from);
      }
      if (RESERVED_STAGE_NAMES.includes(name)) {
        warn(
          'ReservedStageName',
          `Stage name should not use the same name as reserved stage "${name}"`,
          from,
        );
      }
      if (seen.has(name)) {
        warn('DuplicateStageName', `Duplicate stage name "${name}", stage names should be unique`, from);
      }
      seen.add(name);
    }
    const platform = from.platform;
    if (platform !== undefined && !platform.includes('$')) {
      // BuildKit (dockerfile2llb reportConstPlatformDisallowed): unless the stage's name says
      // which platform it is for (`build_amd64`), by its OS, architecture or variant.
      const stageName = (words.length === 3 ? (words[2] ?? '') : '').toLowerCase();
      const parts = platform.toLowerCase().split('/').filter(Boolean);
      if (!parts.some((p) => stageName.includes(p))) {
        warn(
          'FromPlatformFlagConstDisallowed',
          `FROM --platform flag should not use constant value "${platform}"`,
          from,
        );
      }
    }
    if (platform === '$TARGETPLATFORM' || platform === '${TARGETPLATFORM}') {
      warn(
        'RedundantTargetPlatform',
        `Setting platform to predefined ${platform} in FROM is redundant as this is the default behavior`,
        from,
      );
    }
    const known = new Set([...globalDeclared, ...PLATFORM_ARGS]);
    for (const ref of varRefs(`${from.image} ${platform ?? ''}`)) {
      if (!known.has(ref)) {
        warn(
          'UndefinedArgInFrom',
          withSuggestion(`FROM argument '${ref}' is not declared`, ref, known, ''),
          from,
        );
      }
    }
    if (varRefs(from.image).length > 0) {
      const image = expandWithDefaults(df, from, globalDefaults);
      const isStage =
        image !== undefined && df.stages.some((s) => s.index < stage.index && s.name === image.toLowerCase());
      if (
        image === undefined ||
        (!isStage && image.toLowerCase() !== 'scratch' && tryParseReference(image) === null)
      ) {
        warn(
          'InvalidDefaultArgInFrom',
          `Default value for ARG ${from.image} results in empty or invalid base image name`,
          from,
        );
      }
    }
  }

  // Per stage, in build order: the instructions as the builder expands them.
  const plan: BuildPlan = planBuild(df, {
    ...(options.target !== undefined ? { target: options.target } : {}),
    buildArgs: options.buildArgs ?? {},
  });
  const stageEnv = new Map<number, Set<string>>();
  const stageShell = new Map<number, boolean>();
  const stageWorkdir = new Map<number, boolean>();
  const order = [...plan.stages].sort((a, b) => a.index - b.index);
  for (const planned of order) {
    const stage = planned.stage;
    const inherited =
      planned.base.kind === 'stage'
        ? new Set(stageEnv.get(planned.base.index) ?? [])
        : new Set<string>(
            planned.base.kind === 'image' ? (options.baseImageEnv?.(planned.base.ref) ?? []) : [],
          );
    inherited.add('PATH');
    let hasShell = planned.base.kind === 'stage' ? (stageShell.get(planned.base.index) ?? false) : false;
    let absWorkdir = planned.base.kind === 'stage' ? (stageWorkdir.get(planned.base.index) ?? false) : false;
    lintStage(stage, warn);
    const baseEnv = Object.fromEntries([...inherited].map((k) => [k, '']));
    const scope: ExpansionScope = createStageScope(plan, baseEnv);
    const env = new Set(inherited);
    // ARG names declared in the stage before the instruction (for suggestions), kept as the
    // loop goes: looking back from each instruction made 10,000 LABELs quadratic (12 s).
    const declared = new Set<string>();
    let previous: Instruction | undefined;
    for (const instr of stage.instructions) {
      if (previous?.kind === 'ARG') {
        previous.args.forEach((a) => declared.add(a.name));
      }
      previous = instr;
      const missing = new Set<string>();
      const lookup = scope.lookup.bind(scope);
      scope.lookup = (name: string): string | undefined => {
        const v = lookup(name);
        if (v === undefined) {
          missing.add(name);
        }
        return v;
      };
      let expanded: Instruction | undefined;
      try {
        expanded = expandInstruction(instr, scope);
      } catch {
        expanded = undefined;
      } finally {
        scope.lookup = lookup;
      }
      if (
        instr.kind !== 'RUN' &&
        instr.kind !== 'CMD' &&
        instr.kind !== 'ENTRYPOINT' &&
        instr.kind !== 'HEALTHCHECK'
      ) {
        const handled = new Set([...instr.original.matchAll(VAR_WITH_DEFAULT)].map((m) => m[1] ?? ''));
        for (const name of missing) {
          // An ARG declared without a value is defined (empty), as in BuildKit.
          if (!handled.has(name) && !PROXY_ARGS.includes(name) && !declared.has(name)) {
            const known = new Set([...env, ...declared]);
            warn(
              'UndefinedVar',
              withSuggestion(`Usage of undefined variable '$${name}'`, name, known, '$'),
              instr,
            );
          }
        }
      }
      if (
        options.dockerignore !== undefined &&
        expanded !== undefined &&
        (expanded.kind === 'COPY' || expanded.kind === 'ADD') &&
        (expanded.kind === 'ADD' || expanded.from === undefined)
      ) {
        // BuildKit's validateCopySourcePath: each source of the main context, as written,
        // against the ignore file's patterns (a match of it or of a parent directory).
        const cmd = expanded.kind === 'ADD' ? 'Add' : 'Copy';
        for (const src of expanded.sources) {
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(src) || /^[^/\s]+@[^/\s]+:/.test(src)) {
            continue; // a URL or git source, not the context
          }
          if (options.dockerignore.isIgnored(src.replace(/^(\.\/)+/, ''))) {
            warn(
              'CopyIgnoredFile',
              `Attempting to ${cmd} file "${src}" that is excluded by .dockerignore`,
              instr,
            );
          }
        }
      }
      if (expanded !== undefined) {
        try {
          scope.apply(expanded);
        } catch {
          // over a variables limit: the build fails there with the line; checks read on
        }
        if (expanded.kind === 'ENV') {
          for (const p of expanded.pairs) {
            env.add(p.key);
          }
        }
      }
      if (instr.kind === 'SHELL') {
        hasShell = true;
      }
      if (
        (instr.kind === 'CMD' || instr.kind === 'ENTRYPOINT') &&
        instr.command.form === 'shell' &&
        !hasShell
      ) {
        warn(
          'JSONArgsRecommended',
          `JSON arguments recommended for ${instr.kind} to prevent unintended behavior related to OS signals`,
          instr,
        );
      }
      if (instr.kind === 'WORKDIR') {
        const path = expanded?.kind === 'WORKDIR' ? expanded.path : instr.path;
        if (path.startsWith('/')) {
          absWorkdir = true;
        } else if (!absWorkdir) {
          warn(
            'WorkdirRelativePath',
            `Relative workdir "${path}" can have unexpected results if the base image changes`,
            instr,
          );
        }
      }
    }
    stageEnv.set(planned.index, env);
    stageShell.set(planned.index, hasShell);
    stageWorkdir.set(planned.index, absWorkdir);
  }
  // Stages the target does not need are still linted for what needs no expansion.
  for (const stage of df.stages) {
    if (!plan.stages.some((p) => p.index === stage.index)) {
      lintStage(stage, warn);
    }
  }
  return out;
}

/** Rules that read one stage's instructions as written. */
function lintStage(
  stage: Stage,
  warn: (name: CheckRuleName, message: string, instr: { startLine: number; endLine: number }) => void,
): void {
  for (const kind of ['CMD', 'ENTRYPOINT', 'HEALTHCHECK'] as const) {
    const all = stage.instructions.filter((i) => i.kind === kind);
    for (const instr of all.slice(0, -1)) {
      warn(
        'MultipleInstructionsDisallowed',
        `Multiple ${kind} instructions should not be used in the same stage because only the last one will be used`,
        instr,
      );
    }
  }
  for (const instr of stage.instructions) {
    if (instr.kind === 'MAINTAINER') {
      warn('MaintainerDeprecated', 'Maintainer instruction is deprecated in favor of using label', instr);
    }
    if (instr.kind === 'ENV' || instr.kind === 'LABEL') {
      if (isLegacyKeyValue(instr.original)) {
        warn(
          'LegacyKeyValueFormat',
          `"${instr.kind} key=value" should be used instead of legacy "${instr.kind} key value" format`,
          instr,
        );
      }
    }
    if (instr.kind === 'ENV') {
      for (const p of instr.pairs) {
        if (isSecretKey(p.key)) {
          warn('SecretsUsedInArgOrEnv', secretMessage('ENV', p.key), instr);
        }
      }
    }
    if (instr.kind === 'ARG') {
      for (const a of instr.args) {
        if (isSecretKey(a.name)) {
          warn('SecretsUsedInArgOrEnv', secretMessage('ARG', a.name), instr);
        }
      }
    }
  }
}

function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !SECRET_ALLOW.test(key);
}

function secretMessage(kind: 'ARG' | 'ENV', key: string): string {
  return `Do not use ARG or ENV instructions for sensitive data (${kind} ${JSON.stringify(key)})`;
}

/** `ENV key value` (no `=` in the first word) rather than `ENV key=value`. */
function isLegacyKeyValue(original: string): boolean {
  const rest = original.trim().replace(/^\S+\s*/, '');
  const first = parseWords(rest, '\\')[0];
  return first !== undefined && !first.includes('=');
}

/** FROM's arguments as written: `image`, or `image AS name`. */
function fromWords(from: FromInstruction): string[] {
  return from.original
    .trim()
    .split(/\s+/)
    .slice(1)
    .filter((w, i, all) => !(w.startsWith('--') && all.slice(0, i).every((x) => x.startsWith('--'))));
}

function varRefs(text: string): string[] {
  return [...new Set([...text.matchAll(VAR_REF)].map((m) => m[1] ?? m[2] ?? ''))];
}

/** The FROM image expanded with the global ARGs' default values only; undefined when blank. */
function expandWithDefaults(
  df: Dockerfile,
  from: FromInstruction,
  defaults: Record<string, string | undefined>,
): string | undefined {
  const lex = new ShellLex({ escapeToken: df.directives.escape });
  let image: string;
  try {
    image = lex.processWord(
      from.image,
      (name) => defaults[name] ?? (PLATFORM_ARGS.includes(name) ? 'x' : ''),
    );
  } catch {
    return undefined;
  }
  return image.trim() === '' ? undefined : image;
}

function withSuggestion(message: string, name: string, known: ReadonlySet<string>, prefix: string): string {
  const best = closestName(name, known);
  return best !== undefined ? `${message} (did you mean ${prefix}${best}?)` : message;
}
