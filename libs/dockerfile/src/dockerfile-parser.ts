// Dockerfile parser, a port of BuildKit's frontend/dockerfile/parser (line scanning,
// directives, continuations, heredocs, per-instruction argument splitting) and
// instructions/parse.go (typed instructions, flags, argument checks, error texts).
//
// Hand-written rather than `dockerfile-ast`: that package builds an editor-oriented
// range AST and does not reproduce BuildKit's exact rules (continuation regex with
// the escape token, comment/empty lines inside continuations, heredoc detection via
// the shell lexer with quoted-delimiter detection, `<<-` tab stripping, JSON fallback),
// which decide the text every cache key is computed from.
import { closestName } from './closest-name';
import { DockerfileError } from './dockerfile-error';
import { DOCKERFILE_LIMITS, type DockerfileLimits } from './dockerfile-limits';
import { parseGoDuration } from './go-duration';
import type {
  AddInstruction,
  ArgDeclaration,
  ArgInstruction,
  CommandLine,
  CopyInstruction,
  Dockerfile,
  FromInstruction,
  Heredoc,
  HealthcheckOptions,
  InlineSource,
  Instruction,
  InstructionBase,
  KeyValue,
  Mount,
  NetworkMode,
  ParseWarning,
  RawFlag,
  SecurityMode,
  Stage,
} from './instructions';
import { INSTRUCTION_KINDS } from './instructions';
import { parseMount } from './run-mount';
import { ShellLex, isSpace } from './shell-lex';

const RE_DIRECTIVE = /^#[ \t\f\r]*([a-zA-Z][a-zA-Z0-9]*)[ \t\f\r]*=[ \t\f\r]*(.+?)[ \t\f\r]*$/;
const RE_WHITESPACE = /[\t\v\f\r ]+/;
const RE_HEREDOC = /^(\d*)<<(-?)([^<]*)$/;
const HEREDOC_KINDS = new Set(['run', 'copy', 'add']);

class ParseFailure extends Error {}

/** A DOCKERFILE_LIMIT error: `what` is over limit `name`. */
function overLimit(
  name: keyof DockerfileLimits,
  what: string,
  line: number | undefined,
  endLine: number | undefined = line,
): DockerfileError {
  return new DockerfileError(
    'DOCKERFILE_LIMIT',
    `${what} exceeds the limit ${name} (${DOCKERFILE_LIMITS[name]})`,
    line,
    endLine,
  );
}

/**
 * Counts of the parsed file against the limits, at the first instruction over each: checked
 * before any expansion or planning, whose cost grows with them.
 */
function checkCounts(instructions: readonly Instruction[]): void {
  const L = DOCKERFILE_LIMITS;
  let stages = 0;
  let args = 0;
  let entries = 0;
  for (const instr of instructions) {
    if (instr.kind === 'FROM' && ++stages > L.maxStages) {
      throw overLimit('maxStages', `stage ${stages}`, instr.startLine, instr.endLine);
    }
    if (instr.kind === 'ARG' && (args += instr.args.length) > L.maxArgs) {
      throw overLimit('maxArgs', `ARG declaration ${args}`, instr.startLine, instr.endLine);
    }
    if (instr.kind === 'ENV' && (entries += instr.pairs.length) > L.maxKeyValueEntries) {
      throw overLimit('maxKeyValueEntries', `ENV/LABEL entry ${entries}`, instr.startLine, instr.endLine);
    }
    if (instr.kind === 'LABEL' && (entries += instr.labels.length) > L.maxKeyValueEntries) {
      throw overLimit('maxKeyValueEntries', `ENV/LABEL entry ${entries}`, instr.startLine, instr.endLine);
    }
  }
}

/** Raw node: the equivalent of BuildKit's ast.Node for one instruction. */
interface RawNode {
  keyword: string;
  lower: string;
  flags: string[];
  args: string[];
  json: boolean;
  original: string;
  startLine: number;
  endLine: number;
  source: string;
  heredocs: Heredoc[];
  child?: RawNode;
}

class Directives {
  escape: '\\' | '`' = '\\';
  syntax?: string;
  check?: string;
  done = false;
  private readonly seen = new Set<string>();
  private continuation = /([^\\])\\[ \t]*$|^\\[ \t]*$/;

  possibleDirective(line: string): void {
    if (this.done) {
      return;
    }
    const m = RE_DIRECTIVE.exec(line);
    const key = m?.[1]?.toLowerCase();
    if (m === null || key === undefined || !['escape', 'syntax', 'check'].includes(key)) {
      this.done = true;
      return;
    }
    if (this.seen.has(key)) {
      throw new ParseFailure(`only one ${key} parser directive can be used`);
    }
    this.seen.add(key);
    const value = m[2] ?? '';
    if (key === 'escape') {
      if (value !== '`' && value !== '\\') {
        throw new ParseFailure(`invalid escape token '${value}' does not match \` or \\`);
      }
      this.escape = value;
      const e = value === '`' ? '`' : '\\\\';
      this.continuation = new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
    } else if (key === 'syntax') {
      this.syntax = value;
    } else {
      this.check = value;
    }
  }

  /** Returns the line without its continuation token, and whether the line is complete. */
  trimContinuation(line: string): [string, boolean] {
    if (this.continuation.test(line)) {
      return [line.replace(this.continuation, '$1'), false];
    }
    return [line, true];
  }
}

function trimLeftSpace(s: string): string {
  let i = 0;
  while (i < s.length && isSpace(s.charCodeAt(i))) {
    i++;
  }
  return s.slice(i);
}

function trimNewline(s: string): string {
  return s.replace(/[\r\n]+$/, '');
}

function isComment(line: string): boolean {
  return trimLeftSpace(trimNewline(line)).startsWith('#');
}

export interface ParseOptions {
  /**
   * Keep a second stage of the same name instead of failing (the build checks report it as
   * DuplicateStageName); `FROM`/`--from` then name the first.
   */
  allowDuplicateStageNames?: boolean;
}

/**
 * Parses a Dockerfile the way BuildKit's dockerfile frontend does.
 *
 * @throws {DockerfileError} with code `DOCKERFILE_PARSE` and the 1-based line of the
 *   offending instruction. Nothing else is thrown for any input.
 */
export function parseDockerfile(text: string, options: ParseOptions = {}): Dockerfile {
  if (text.length > DOCKERFILE_LIMITS.maxDockerfileLength) {
    throw overLimit('maxDockerfileLength', `the Dockerfile (${text.length} characters)`, undefined);
  }
  const directives = new Directives();
  const warnings: ParseWarning[] = [];
  const nodes = scan(text, directives, warnings);
  if (nodes.length > DOCKERFILE_LIMITS.maxInstructions) {
    const at = nodes[DOCKERFILE_LIMITS.maxInstructions];
    throw overLimit('maxInstructions', `${nodes.length} instructions`, at?.startLine);
  }
  const instructions: Instruction[] = [];
  for (const node of nodes) {
    instructions.push(located(node, () => toInstruction(node, directives)));
  }
  checkCounts(instructions);
  const globalArgs: ArgInstruction[] = [];
  const stages: Stage[] = [];
  const names = new Map<string, number>();
  for (const instr of instructions) {
    if (instr.kind === 'FROM') {
      if (instr.name !== undefined) {
        if (names.has(instr.name) && options.allowDuplicateStageNames !== true) {
          throw new DockerfileError(
            'DOCKERFILE_PARSE',
            `duplicate stage name "${instr.name}"`,
            instr.startLine,
            instr.endLine,
          );
        }
        if (!names.has(instr.name)) {
          names.set(instr.name, stages.length);
        }
      }
      stages.push({ index: stages.length, name: instr.name, from: instr, instructions: [] });
      continue;
    }
    const current = stages[stages.length - 1];
    if (current === undefined) {
      if (instr.kind === 'ARG') {
        globalArgs.push(instr);
        continue;
      }
      throw new DockerfileError(
        'DOCKERFILE_PARSE',
        `no build stage in current context: ${instr.keyword.toUpperCase()} before the first FROM (only ARG may precede FROM)`,
        instr.startLine,
        instr.endLine,
      );
    }
    current.instructions.push(instr);
    if (instr.kind === 'MAINTAINER') {
      warnings.push({
        line: instr.startLine,
        message: 'MAINTAINER instruction is deprecated in favor of using label',
      });
    }
  }
  if (stages.length === 0) {
    const last = instructions[instructions.length - 1];
    throw new DockerfileError('DOCKERFILE_PARSE', 'dockerfile contains no stages to build', last?.startLine);
  }
  return {
    directives: {
      escape: directives.escape,
      syntax: directives.syntax,
      check: directives.check,
    },
    globalArgs,
    stages,
    instructions,
    warnings,
  };
}

function located<T>(node: RawNode, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ParseFailure) {
      throw new DockerfileError('DOCKERFILE_PARSE', err.message, node.startLine, node.endLine);
    }
    throw err;
  }
}

/** Line scanning: BuildKit parser.Parse. */
function scan(text: string, d: Directives, warnings: ParseWarning[]): RawNode[] {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  if (lines.length > 0 && lines[0]?.startsWith('\uFEFF')) {
    lines[0] = lines[0].slice(1);
  }
  const nodes: RawNode[] = [];
  let i = 0;
  const fail = (msg: string, start: number, end = start): never => {
    throw new DockerfileError('DOCKERFILE_PARSE', msg, start, end);
  };
  // BuildKit's scanner stops at a line over 64 KiB; checked up front so nothing below (the
  // lexer runs over whole instructions) ever sees one.
  const maxLine = DOCKERFILE_LIMITS.maxLineLength;
  lines.forEach((l, n) => {
    if (l.length > maxLine && trimNewline(l).length > maxLine) {
      throw overLimit('maxLineLength', `line of ${trimNewline(l).length} characters`, n + 1);
    }
  });
  const maxInstruction = DOCKERFILE_LIMITS.maxInstructionLength;
  const checkInstruction = (length: number, start: number): void => {
    if (length > maxInstruction) {
      throw overLimit('maxInstructionLength', `instruction of ${length}+ characters`, start, i);
    }
  };
  const processLine = (raw: string, stripLeft: boolean, lineNo: number): string => {
    let token = trimNewline(raw);
    if (stripLeft) {
      token = trimLeftSpace(token);
    }
    try {
      d.possibleDirective(token);
    } catch (err) {
      if (err instanceof ParseFailure) {
        fail(err.message, lineNo);
      }
      throw err;
    }
    return token.startsWith('#') ? '' : token;
  };

  while (i < lines.length) {
    const first = lines[i] ?? '';
    i++;
    const startLine = i;
    const startIdx = i - 1;
    const processed = processLine(first, true, startLine);
    let [line, complete] = d.trimContinuation(processed);
    if (complete && line === '') {
      continue;
    }
    let emptyContinuation = false;
    let length = first.length;
    while (!complete && i < lines.length) {
      const raw = lines[i] ?? '';
      i++;
      length += raw.length;
      checkInstruction(length, startLine);
      const p = processLine(raw, false, i);
      if (isComment(raw)) {
        continue;
      }
      if (trimLeftSpace(trimNewline(p)) === '') {
        emptyContinuation = true;
        continue;
      }
      let piece: string;
      [piece, complete] = d.trimContinuation(p);
      line += piece;
    }
    if (emptyContinuation) {
      warnings.push({ line: startLine, message: `Empty continuation line found in: ${line.trim()}` });
    }
    let node: RawNode;
    try {
      node = newNode(line, d, startLine, i);
    } catch (err) {
      if (err instanceof ParseFailure) {
        return fail(err.message, startLine, i);
      }
      throw err;
    }
    if (!complete && node.args.length === 0 && node.child === undefined) {
      fail(
        `unexpected end of file: line continuation after ${node.keyword} with nothing to continue`,
        startLine,
        i,
      );
    }
    if (canContainHeredoc(node)) {
      for (const doc of heredocsFromLine(line)) {
        let terminated = false;
        let content = '';
        while (i < lines.length) {
          const raw = lines[i] ?? '';
          i++;
          let candidate = trimNewline(raw);
          if (doc.chomp) {
            candidate = candidate.replace(/^\t+/, '');
          }
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          length += raw.length;
          checkInstruction(length, startLine);
          content += raw;
        }
        if (!terminated) {
          fail(`unterminated heredoc: no line matching the terminator "${doc.name}"`, startLine, i);
        }
        node.heredocs.push({ ...doc, content: doc.chomp ? content.replace(/^\t+/gm, '') : content });
      }
      if (node.child) {
        node.child.heredocs = node.heredocs;
      }
    }
    node.endLine = i;
    node.source = lines.slice(startIdx, i).join('');
    if (node.child) {
      node.child.endLine = i;
      node.child.source = node.source;
    }
    nodes.push(node);
  }
  if (nodes.length === 0) {
    fail('file with no instructions', Math.max(lines.length, 1));
  }
  return nodes;
}

function canContainHeredoc(node: RawNode): boolean {
  const target = node.lower === 'onbuild' && node.child ? node.child : node;
  return HEREDOC_KINDS.has(target.lower) && !target.json;
}

/** BuildKit heredocsFromLine: words of the line that look like `<<WORD`. */
function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = new ShellLex({ rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).processWords(
      line,
      () => undefined,
    );
  } catch {
    return [];
  }
  const docs: Omit<Heredoc, 'content'>[] = [];
  for (const word of words) {
    const doc = parseHeredoc(word);
    if (doc) {
      docs.push(doc);
    }
  }
  return docs;
}

/** Recognises a `[n]<<[-]WORD` token; undefined when it is not a heredoc. */
export function parseHeredoc(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = RE_HEREDOC.exec(word);
  if (!m) {
    return undefined;
  }
  const rest = m[3] ?? '';
  if (rest === '') {
    return undefined;
  }
  const none = (): undefined => undefined;
  let words: string[];
  let raw: string[];
  try {
    words = new ShellLex({ skipUnsetEnv: true }).processWords(rest, none);
    if (words.length !== 1) {
      return undefined;
    }
    raw = new ShellLex({ skipUnsetEnv: true, rawQuotes: true }).processWords(rest, none);
  } catch (err) {
    throw new ParseFailure((err as Error).message);
  }
  const name = words[0] ?? '';
  const quotes = (s: string): number => (s.match(/['"]/g) ?? []).length;
  return {
    name,
    fileDescriptor: m[1] ? Number(m[1]) : 0,
    expand: quotes(name) === quotes(raw[0] ?? ''),
    chomp: m[2] === '-',
  };
}

/** BuildKit newNodeFromLine + splitCommand + the per-instruction line parsers. */
function newNode(line: string, d: Directives, startLine: number, endLine: number): RawNode {
  const trimmed = line.trim();
  const m = /^(\S+)(?:[\t\v\f\r\n ]+([\s\S]*))?$/.exec(trimmed);
  const keyword = m?.[1] ?? trimmed;
  const [rest, flags] = extractBuilderFlags(m?.[2] ?? '', d.escape);
  const args = rest.trim();
  const node: RawNode = {
    keyword,
    lower: keyword.toLowerCase(),
    flags,
    args: [],
    json: false,
    original: line,
    startLine,
    endLine,
    source: '',
    heredocs: [],
  };
  switch (node.lower) {
    case 'add':
    case 'copy':
    case 'volume':
      [node.args, node.json] = parseMaybeJsonToList(args);
      break;
    case 'arg':
      node.args = parseWords(args, d.escape);
      break;
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      [node.args, node.json] = parseMaybeJson(args);
      break;
    case 'env':
    case 'label':
      node.args = parseNameVal(args, node.lower.toUpperCase(), d.escape);
      break;
    case 'expose':
    case 'from':
      node.args = splitWhitespace(args);
      break;
    case 'healthcheck':
      [node.args, node.json] = parseHealthConfig(args);
      break;
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      node.args = args === '' ? [] : [args];
      break;
    case 'onbuild':
      if (args !== '') {
        node.child = newNode(args, d, startLine, endLine);
        node.args = [node.child.keyword, ...node.child.args];
      }
      break;
    default:
      // Unknown instructions are reported when typed (after the whole file scanned), as BuildKit does.
      break;
  }
  return node;
}

/**
 * BuildKit extractBuilderFlags: leading `--name[=value]` words, quotes removed, `\` escapes
 * taken out. Under `` # escape=` `` the backtick is the escape character instead, as for every
 * other word of a line (BuildKit still strips `\` there, so `--chown=DOMAIN\user` lost its
 * `\`); a backtick escape is kept as written, because flag values go through the variable
 * lexer afterwards, which takes it out once.
 */
function extractBuilderFlags(line: string, escape: '\\' | '`'): [string, string[]] {
  const keep = escape === '`';
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = line[pos] ?? '';
    const end = pos === line.length;
    if (phase === 'spaces') {
      if (end) {
        break;
      }
      if (isSpace(ch.charCodeAt(0))) {
        continue;
      }
      if (ch !== '-' || pos + 1 === line.length || line[pos + 1] !== '-') {
        return [line.slice(pos), words];
      }
      phase = 'word';
    }
    if (end) {
      if (word !== '--' && (blankOK || word.length > 0)) {
        words.push(word);
      }
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch.charCodeAt(0))) {
        phase = 'spaces';
        if (word === '--') {
          return [line.slice(pos), words];
        }
        if (blankOK || word.length > 0) {
          words.push(word);
        }
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) {
          continue;
        }
        pos++;
        word += (keep ? escape : '') + (line[pos] ?? '');
        continue;
      }
      word += ch;
      continue;
    }
    // in quote
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === escape) {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += (keep ? escape : '') + (line[pos] ?? '');
      continue;
    }
    word += ch;
  }
  return ['', words];
}

function splitWhitespace(rest: string): string[] {
  return rest === '' ? [] : rest.split(RE_WHITESPACE);
}

const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

/** JSON array of strings, or undefined when `rest` is not valid JSON (shell form then). */
function parseJson(rest: string): string[] | undefined {
  const text = trimLeftSpace(rest);
  if (!text.startsWith('[')) {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) {
    return undefined;
  }
  const out: string[] = [];
  for (const item of value) {
    if (typeof item !== 'string') {
      throw new ParseFailure(NOT_STRING_ARRAY);
    }
    out.push(item);
  }
  return out;
}

function parseMaybeJson(rest: string): [string[], boolean] {
  if (rest === '') {
    return [[], false];
  }
  const json = parseJson(rest);
  return json ? [json, true] : [[rest], false];
}

function parseMaybeJsonToList(rest: string): [string[], boolean] {
  const json = parseJson(rest);
  return json ? [json, true] : [splitWhitespace(rest), false];
}

function parseHealthConfig(rest: string): [string[], boolean] {
  let sep = 0;
  while (sep < rest.length && !isSpace(rest.charCodeAt(sep))) {
    sep++;
  }
  if (sep === 0) {
    return [[], false];
  }
  let next = sep;
  while (next < rest.length && isSpace(rest.charCodeAt(next))) {
    next++;
  }
  const [cmd, json] = parseMaybeJson(rest.slice(next));
  return [[rest.slice(0, sep), ...cmd], json];
}

/** BuildKit parseWords: whitespace-separated words, quotes and escapes kept verbatim. */
export function parseWords(rest: string, escape: string): string[] {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  const chars = Array.from(rest);
  for (let pos = 0; pos <= chars.length; pos++) {
    const end = pos === chars.length;
    let ch = chars[pos] ?? '';
    if (phase === 'spaces') {
      if (end) {
        break;
      }
      if (isSpace(ch.codePointAt(0) ?? 0)) {
        continue;
      }
      phase = 'word';
    }
    if (end) {
      if (blankOK || word.length > 0) {
        words.push(word);
      }
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch.codePointAt(0) ?? 0)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) {
          words.push(word);
        }
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) {
          continue;
        }
        word += ch;
        pos++;
        ch = chars[pos] ?? '';
      }
      word += ch;
      continue;
    }
    if (ch === quote) {
      phase = 'word';
    }
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = chars[pos] ?? '';
    }
    word += ch;
  }
  return words;
}

/** ENV/LABEL: `key value` (legacy) or `k=v k2="v 2"`; returns key, value, key, value... */
function parseNameVal(rest: string, command: string, escape: string): string[] {
  const words = parseWords(rest, escape);
  if (words.length === 0) {
    return [];
  }
  if (!(words[0] ?? '').includes('=')) {
    const m = /^(\S+?)[\t\v\f\r ]+([\s\S]*)$/.exec(rest);
    if (!m) {
      throw new ParseFailure(`${command} must have two arguments`);
    }
    return [m[1] ?? '', m[2] ?? ''];
  }
  const out: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) {
      throw new ParseFailure(`Syntax error - can't find = in "${word}". Must be of the form: name=value`);
    }
    out.push(word.slice(0, eq), word.slice(eq + 1));
  }
  return out;
}

type FlagKind = 'bool' | 'string' | 'strings';

/** BuildKit BFlags: declare the allowed flags, then parse the raw `--x=y` words. */
class Flags {
  private readonly spec = new Map<string, FlagKind>();
  private readonly values = new Map<string, string[]>();

  constructor(private readonly raw: string[]) {}

  bool(name: string): this {
    this.spec.set(name, 'bool');
    return this;
  }

  string(name: string): this {
    this.spec.set(name, 'string');
    return this;
  }

  strings(name: string): this {
    this.spec.set(name, 'strings');
    return this;
  }

  parse(): this {
    for (const a of this.raw) {
      if (a === '--') {
        return this;
      }
      if (!a.startsWith('--')) {
        throw new ParseFailure(`arg should start with -- : ${a}`);
      }
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const value = eq < 0 ? undefined : a.slice(eq + 1);
      const kind = this.spec.get(name);
      if (kind === undefined) {
        const known = [...this.spec.keys()];
        const hint = known.length > 0 ? ` (allowed: ${known.map((k) => '--' + k).join(', ')})` : '';
        throw new ParseFailure(`unknown flag: ${name}${hint}`);
      }
      if (this.values.has(name) && kind !== 'strings') {
        throw new ParseFailure(`duplicate flag specified: ${name}`);
      }
      switch (kind) {
        case 'bool': {
          if (value === '') {
            throw new ParseFailure(`missing a value on flag: ${name}`);
          }
          const v = (value ?? 'true').toLowerCase();
          if (v !== 'true' && v !== 'false') {
            throw new ParseFailure(`expecting boolean value for flag ${name}, not: ${value ?? ''}`);
          }
          this.values.set(name, [v]);
          break;
        }
        case 'string':
        case 'strings':
          if (value === undefined) {
            throw new ParseFailure(`missing a value on flag: ${name}`);
          }
          this.values.set(name, [...(this.values.get(name) ?? []), value]);
          break;
      }
    }
    return this;
  }

  str(name: string): string | undefined {
    return this.values.get(name)?.[0];
  }

  list(name: string): string[] {
    return this.values.get(name) ?? [];
  }

  isTrue(name: string): boolean {
    return this.str(name) === 'true';
  }

  optionalBool(name: string): boolean | undefined {
    const v = this.str(name);
    return v === undefined ? undefined : v === 'true';
  }
}

function rawFlags(flags: string[]): RawFlag[] {
  return flags.map((f) => {
    const body = f.replace(/^--/, '');
    const eq = body.indexOf('=');
    return eq < 0 ? { name: body, value: undefined } : { name: body.slice(0, eq), value: body.slice(eq + 1) };
  });
}

const atLeastOne = (cmd: string): ParseFailure => new ParseFailure(`${cmd} requires at least one argument`);
const exactlyOne = (cmd: string): ParseFailure => new ParseFailure(`${cmd} requires exactly one argument`);

function commandLine(node: RawNode): CommandLine {
  return node.json ? { form: 'exec', args: node.args } : { form: 'shell', command: node.args[0] ?? '' };
}

function pairs(node: RawNode, cmd: string): KeyValue[] {
  if (node.args.length === 0) {
    throw atLeastOne(cmd);
  }
  const out: KeyValue[] = [];
  for (let j = 0; j < node.args.length; j += 2) {
    const key = node.args[j] ?? '';
    if (key === '') {
      throw new ParseFailure(`${cmd} names can not be blank`);
    }
    out.push({ key, value: node.args[j + 1] ?? '' });
  }
  return out;
}

function unknownInstruction(keyword: string): ParseFailure {
  const best = closestName(keyword.toUpperCase(), INSTRUCTION_KINDS);
  const hint = best !== undefined ? ` (did you mean ${best}?)` : '';
  return new ParseFailure(`unknown instruction: ${keyword}${hint}`);
}

function duration(flags: Flags, name: string): number {
  const value = flags.str(name);
  if (value === undefined || value === '') {
    return 0;
  }
  let ns: number;
  try {
    ns = parseGoDuration(value);
  } catch (err) {
    throw new ParseFailure((err as Error).message);
  }
  if (ns !== 0 && ns < 1e6) {
    throw new ParseFailure(`Interval "${name}" cannot be less than 1ms`);
  }
  if (ns < 0) {
    throw new ParseFailure(`Interval "${name}" cannot be negative`);
  }
  return ns;
}

function sourcesAndDest(
  node: RawNode,
  cmd: string,
): { sources: string[]; inlineSources: InlineSource[]; dest: string } {
  const dest = node.args[node.args.length - 1] ?? '';
  if (!node.json && parseHeredoc(dest)) {
    throw new ParseFailure(`${cmd} cannot accept a heredoc as a destination`);
  }
  const byName = new Map(node.heredocs.map((h) => [h.name, h]));
  const sources: string[] = [];
  const inlineSources: InlineSource[] = [];
  for (const src of node.args.slice(0, -1)) {
    const doc = node.json ? undefined : parseHeredoc(src);
    if (doc) {
      inlineSources.push({ path: doc.name, data: byName.get(doc.name)?.content ?? '', expand: doc.expand });
    } else {
      sources.push(src);
    }
  }
  return { sources, inlineSources, dest };
}

function parseMountFlag(raw: string): Mount {
  try {
    return parseMount(raw);
  } catch (err) {
    throw new ParseFailure((err as Error).message);
  }
}

/** BuildKit instructions.ParseInstruction. */
function toInstruction(node: RawNode, d: Directives): Instruction {
  const base: InstructionBase = {
    keyword: node.keyword,
    startLine: node.startLine,
    endLine: node.endLine,
    original: node.original,
    source: node.source,
    flags: rawFlags(node.flags),
  };
  const flags = new Flags(node.flags);
  const args = node.args;
  switch (node.lower) {
    case 'from': {
      let name: string | undefined;
      if (args.length === 3 && (args[1] ?? '').toLowerCase() === 'as') {
        name = (args[2] ?? '').toLowerCase();
        if (!/^[a-z][a-z0-9-_.]*$/.test(name)) {
          throw new ParseFailure(
            `invalid name for build stage: "${args[2] ?? ''}", name can't start with a number or contain symbols`,
          );
        }
      } else if (args.length !== 1) {
        throw new ParseFailure('FROM requires either one or three arguments');
      }
      flags.string('platform').parse();
      const from: FromInstruction = { ...base, kind: 'FROM', image: args[0] ?? '' };
      if (name !== undefined) {
        from.name = name;
      }
      const platform = flags.str('platform');
      if (platform !== undefined) {
        from.platform = platform;
      }
      return from;
    }
    case 'run': {
      flags.strings('mount').string('network').string('security').parse();
      if (args.length === 0 && !node.json) {
        throw atLeastOne('RUN');
      }
      const network = flags.str('network');
      if (network !== undefined && !['default', 'none', 'host'].includes(network)) {
        throw new ParseFailure(`network mode "${network}" not supported (use default, none or host)`);
      }
      const security = flags.str('security');
      if (security !== undefined && !['sandbox', 'insecure'].includes(security)) {
        throw new ParseFailure(`security mode "${security}" not supported (use sandbox or insecure)`);
      }
      return {
        ...base,
        kind: 'RUN',
        command: commandLine(node),
        mounts: flags.list('mount').map(parseMountFlag),
        ...(network !== undefined ? { network: network as NetworkMode } : {}),
        ...(security !== undefined ? { security: security as SecurityMode } : {}),
        heredocs: node.heredocs,
      };
    }
    case 'cmd':
    case 'entrypoint': {
      flags.parse();
      const kind = node.lower === 'cmd' ? 'CMD' : 'ENTRYPOINT';
      if (args.length === 0 && !node.json) {
        throw atLeastOne(kind);
      }
      return { ...base, kind, command: commandLine(node) };
    }
    case 'shell':
      flags.parse();
      if (args.length === 0) {
        throw atLeastOne('SHELL');
      }
      if (!node.json) {
        throw new ParseFailure(`SHELL requires the arguments to be in JSON form`);
      }
      return { ...base, kind: 'SHELL', shell: args };
    case 'copy':
    case 'add': {
      const cmd = node.lower === 'copy' ? 'COPY' : 'ADD';
      if (args.length < 2) {
        throw new ParseFailure(
          `${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`,
        );
      }
      flags.string('chown').string('chmod').bool('link').strings('exclude');
      if (cmd === 'COPY') {
        flags.string('from').bool('parents');
      } else {
        flags.bool('keep-git-dir').string('checksum').bool('unpack');
      }
      flags.parse();
      const common = {
        ...base,
        ...sourcesAndDest(node, cmd),
        link: flags.isTrue('link'),
        exclude: flags.list('exclude'),
        json: node.json,
        heredocs: node.heredocs,
        ...(flags.str('chown') !== undefined ? { chown: flags.str('chown') } : {}),
        ...(flags.str('chmod') !== undefined ? { chmod: flags.str('chmod') } : {}),
      };
      if (cmd === 'COPY') {
        const copy: CopyInstruction = { ...common, kind: 'COPY', parents: flags.isTrue('parents') };
        const from = flags.str('from');
        if (from !== undefined) {
          copy.from = from;
        }
        return copy;
      }
      const add: AddInstruction = { ...common, kind: 'ADD', keepGitDir: flags.isTrue('keep-git-dir') };
      const checksum = flags.str('checksum');
      if (checksum !== undefined) {
        add.checksum = checksum;
      }
      const unpack = flags.optionalBool('unpack');
      if (unpack !== undefined) {
        add.unpack = unpack;
      }
      return add;
    }
    case 'env':
      flags.parse();
      return { ...base, kind: 'ENV', pairs: pairs(node, 'ENV') };
    case 'label':
      flags.parse();
      return { ...base, kind: 'LABEL', labels: pairs(node, 'LABEL') };
    case 'arg': {
      flags.parse();
      if (args.length === 0) {
        throw atLeastOne('ARG');
      }
      const decls = args.map((arg): ArgDeclaration => {
        const eq = arg.indexOf('=');
        if (eq < 0) {
          return { name: arg };
        }
        if (eq === 0) {
          throw new ParseFailure('ARG names can not be blank');
        }
        return { name: arg.slice(0, eq), defaultValue: arg.slice(eq + 1) };
      });
      return { ...base, kind: 'ARG', args: decls };
    }
    case 'expose':
      if (args.length === 0) {
        throw atLeastOne('EXPOSE');
      }
      flags.parse();
      return { ...base, kind: 'EXPOSE', ports: args };
    case 'volume': {
      if (args.length === 0) {
        throw atLeastOne('VOLUME');
      }
      flags.parse();
      const paths = args.map((v) => v.trim());
      if (paths.some((p) => p === '')) {
        throw new ParseFailure('VOLUME specified can not be an empty string');
      }
      return { ...base, kind: 'VOLUME', paths };
    }
    case 'workdir':
      if (args.length !== 1) {
        throw exactlyOne('WORKDIR');
      }
      flags.parse();
      return { ...base, kind: 'WORKDIR', path: args[0] ?? '' };
    case 'user':
      if (args.length !== 1) {
        throw exactlyOne('USER');
      }
      flags.parse();
      return { ...base, kind: 'USER', user: args[0] ?? '' };
    case 'stopsignal':
      if (args.length !== 1) {
        throw exactlyOne('STOPSIGNAL');
      }
      flags.parse();
      return { ...base, kind: 'STOPSIGNAL', signal: args[0] ?? '' };
    case 'maintainer':
      if (args.length !== 1) {
        throw exactlyOne('MAINTAINER');
      }
      flags.parse();
      return { ...base, kind: 'MAINTAINER', maintainer: args[0] ?? '' };
    case 'healthcheck':
      return healthcheck(node, base, flags);
    case 'onbuild': {
      if (args.length === 0 || node.child === undefined) {
        throw atLeastOne('ONBUILD');
      }
      flags.parse();
      const trigger = node.child.keyword.toUpperCase();
      if (trigger === 'ONBUILD') {
        throw new ParseFailure("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      }
      if (trigger === 'MAINTAINER' || trigger === 'FROM') {
        throw new ParseFailure(`${trigger} isn't allowed as an ONBUILD trigger`);
      }
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const doc of node.heredocs) {
        expression += '\n' + doc.content + doc.name;
      }
      // BuildKit checks only the trigger's keyword here and stores the expression as written;
      // a trigger that does not parse (`ONBUILD COPY --bogus=1 a b`) fails in the child build
      // that runs it, not in this one.
      const child = node.child;
      let parsed: Instruction | undefined;
      try {
        parsed = toInstruction(child, d);
      } catch (err) {
        if (!(err instanceof ParseFailure)) {
          throw err;
        }
      }
      return { ...base, kind: 'ONBUILD', expression, ...(parsed !== undefined ? { trigger: parsed } : {}) };
    }
    default:
      throw unknownInstruction(node.keyword);
  }
}

function healthcheck(node: RawNode, base: InstructionBase, flags: Flags): Instruction {
  if (node.args.length === 0) {
    throw atLeastOne('HEALTHCHECK');
  }
  const type = (node.args[0] ?? '').toUpperCase();
  const rest = node.args.slice(1);
  const options: HealthcheckOptions = {
    intervalNs: 0,
    timeoutNs: 0,
    startPeriodNs: 0,
    startIntervalNs: 0,
    retries: 0,
  };
  if (type === 'NONE') {
    if (rest.length !== 0) {
      throw new ParseFailure('HEALTHCHECK NONE takes no arguments');
    }
    // BuildKit declares no flags for NONE and never parses them: `--interval=5s NONE` is accepted.
    return { ...base, kind: 'HEALTHCHECK', test: ['NONE'], options };
  }
  flags
    .string('interval')
    .string('timeout')
    .string('start-period')
    .string('start-interval')
    .string('retries')
    .parse();
  if (type !== 'CMD') {
    throw new ParseFailure(`Unknown type "${type}" in HEALTHCHECK (try CMD)`);
  }
  if (rest.length === 0 || (!node.json && (rest[0] ?? '') === '')) {
    throw new ParseFailure('Missing command after HEALTHCHECK CMD');
  }
  const command: CommandLine = node.json
    ? { form: 'exec', args: rest }
    : { form: 'shell', command: rest[0] ?? '' };
  options.intervalNs = duration(flags, 'interval');
  options.timeoutNs = duration(flags, 'timeout');
  options.startPeriodNs = duration(flags, 'start-period');
  options.startIntervalNs = duration(flags, 'start-interval');
  const retries = flags.str('retries');
  if (retries !== undefined && retries !== '') {
    if (!/^[+-]?\d+$/.test(retries)) {
      throw new ParseFailure(`strconv.ParseInt: parsing "${retries}": invalid syntax`);
    }
    // Go's strconv.ParseInt(v, 10, 32); 0 is the default ("inherit") and accepted since
    // dockerfile 1.5 (moby/buildkit#3092), a negative count is an error.
    const n = Number(retries);
    if (n > 2 ** 31 - 1 || n < -(2 ** 31)) {
      throw new ParseFailure(`strconv.ParseInt: parsing "${retries}": value out of range`);
    }
    if (n < 0) {
      throw new ParseFailure(`--retries cannot be negative (${n})`);
    }
    options.retries = n;
  }
  const test = command.form === 'exec' ? ['CMD', ...command.args] : ['CMD-SHELL', command.command];
  return { ...base, kind: 'HEALTHCHECK', test, command, options };
}
