/**
 * `@stratum/dockerfile`: parse Dockerfiles, expand variables and plan stages the way
 * Docker/BuildKit does. Pure logic, no I/O.
 *
 * Typical use by the builder:
 * ```ts
 * const df = parseDockerfile(text);                       // DockerfileError on bad input
 * const plan = planBuild(df, { target, buildArgs });       // stages to run, in groups
 * for (const group of plan.parallelGroups) {               // stages of a group are independent
 *   // for each stage: const scope = createStageScope(plan, baseImageEnv);
 *   // for each instruction: const x = expandInstruction(instr, scope); scope.apply(x);
 * }
 * ```
 *
 * References: https://docs.docker.com/reference/dockerfile/ and BuildKit's
 * frontend/dockerfile (parser, instructions, shell/lex.go).
 *
 * @packageDocumentation
 */
export { DockerfileError, type DockerfileErrorCode } from './dockerfile-error';
export { parseDockerfile, type ParseOptions } from './dockerfile-parser';
export {
  CHECK_BUILD_ARG,
  CHECK_RULES,
  checkDockerfile,
  checkRuleEnabled,
  checkWarning,
  EXPERIMENTAL_CHECK_RULES,
  formatCheckWarning,
  parseCheckConfig,
  type CheckConfig,
  type CheckOptions,
  type CheckResult,
  type CheckRule,
  type CheckRuleName,
  type CheckWarning,
} from './dockerfile-checks';
export { DOCKERFILE_LIMITS, LimitExceededError, type DockerfileLimits } from './dockerfile-limits';
export type {
  AddInstruction,
  ArgDeclaration,
  ArgInstruction,
  CacheSharing,
  CmdInstruction,
  CommandLine,
  CopyInstruction,
  Dockerfile,
  EntrypointInstruction,
  EnvInstruction,
  ExposeInstruction,
  FromInstruction,
  HealthcheckInstruction,
  HealthcheckOptions,
  Heredoc,
  InlineSource,
  Instruction,
  InstructionBase,
  InstructionKind,
  KeyValue,
  LabelInstruction,
  MaintainerInstruction,
  Mount,
  MountType,
  NetworkMode,
  OnbuildInstruction,
  ParserDirectives,
  ParseWarning,
  RawFlag,
  RunInstruction,
  SecurityMode,
  ShellInstruction,
  Stage,
  StopSignalInstruction,
  UserInstruction,
  VolumeInstruction,
  WorkdirInstruction,
} from './instructions';
export { INSTRUCTION_KINDS } from './instructions';
export {
  ShellLex,
  ShellLexError,
  type LexResult,
  type ShellLexOptions,
  type VariableLookup,
} from './shell-lex';
export { ExpansionScope, PLATFORM_ARGS, PROXY_ARGS, platformArgs, type ScopeSeed } from './expansion-scope';
export { expandInstruction } from './expand-instruction';
export {
  createStageScope,
  expandStage,
  planBuild,
  type BuildPlan,
  type PlanOptions,
  type PlannedStage,
  type StageBase,
  type StageDependency,
} from './build-planner';
export {
  createPathMatcher,
  MAX_DOCKERIGNORE_BYTES,
  parseDockerignore,
  planContextFiles,
  splitParentsSource,
  type Dockerignore,
  type DockerignoreOptions,
  type PathMatcher,
} from '@stratum/context';
