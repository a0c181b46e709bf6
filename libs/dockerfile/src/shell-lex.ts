// Port of BuildKit's word processor, frontend/dockerfile/shell/lex.go (ProcessWord /
// ProcessWords): quotes, escapes and $VAR / ${VAR...} substitutions exactly as the
// builder applies them. Not a shell: no command substitution, no globbing.
import { LimitExceededError } from './dockerfile-limits';

/** Returns a variable's value, or undefined when it is not set (unset ≠ empty). */
export type VariableLookup = (name: string) => string | undefined;

/** Options of {@link ShellLex}; the defaults are what the builder uses for instructions. */
export interface ShellLexOptions {
  /** The Dockerfile's escape character (`# escape=` directive). Default `\`. */
  escapeToken?: string;
  /** Keep quote characters in the result (used to detect quoted heredoc delimiters). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Leave references to unset variables as written instead of expanding them to "". */
  skipUnsetEnv?: boolean;
  /** Treat quotes as ordinary characters (heredoc bodies). */
  skipProcessQuotes?: boolean;
  /**
   * Longest result allowed, checked as it grows (also inside `${...}` words and pattern
   * replacements), so `$A$A...` over a long value fails before it is built. Unlimited when unset.
   */
  maxLength?: { length: number; name: string };
  /**
   * Characters a `${VAR#glob}` / `${VAR%glob}` / `${VAR/glob/...}` may scan: each tries the
   * pattern against up to every prefix or suffix, quadratic in the value's length (a 128 KiB
   * value took minutes). Unlimited when unset.
   */
  maxPatternWork?: { work: number; name: string };
}

/** Result of one {@link ShellLex.process} call. */
export interface LexResult {
  /** The word with quotes removed and variables substituted, spaces kept (ProcessWord). */
  word: string;
  /** The same text split on unquoted whitespace (ProcessWords). */
  words: string[];
  /** Names that were looked up and found. */
  matched: Set<string>;
  /** Names that were looked up and were unset. */
  unmatched: Set<string>;
}

/** Thrown by {@link ShellLex} for malformed input; callers add the Dockerfile location. */
export class ShellLexError extends Error {
  override readonly name = 'ShellLexError';
}

const EOF = -1;

/** Go's unicode.IsSpace. */
export function isSpace(cp: number): boolean {
  switch (cp) {
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d:
    case 0x20:
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200a;
  }
}

function isDigit(cp: number): boolean {
  return /^\p{Nd}$/u.test(String.fromCodePoint(cp));
}

function isLetter(cp: number): boolean {
  return /^\p{L}$/u.test(String.fromCodePoint(cp));
}

function isSpecialParam(cp: number): boolean {
  return '@*#?-$!0'.includes(String.fromCodePoint(cp));
}

class Words {
  word = '';
  words: string[] = [];
  inWord = false;

  addChar(ch: string): void {
    const space = isSpace(ch.codePointAt(0) ?? 0);
    if (space && this.inWord) {
      if (this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else if (!space) {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) {
      this.addChar(ch);
    }
  }

  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  getWords(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class Scanner {
  private pos = 0;
  private readonly cps: number[];

  constructor(text: string) {
    this.cps = Array.from(text, (c) => c.codePointAt(0) ?? 0);
  }

  peek(): number {
    return this.pos < this.cps.length ? (this.cps[this.pos] ?? EOF) : EOF;
  }

  next(): number {
    const cp = this.peek();
    if (cp !== EOF) {
      this.pos++;
    }
    return cp;
  }
}

const chr = (cp: number): string => String.fromCodePoint(cp);

/**
 * BuildKit-compatible word lexer. One instance per escape token / option set; stateless
 * between calls.
 */
export class ShellLex {
  private readonly escape: number;

  constructor(private readonly options: ShellLexOptions = {}) {
    this.escape = (options.escapeToken ?? '\\').codePointAt(0) ?? 0x5c;
  }

  /** ProcessWord: substitute variables and remove quotes, keeping spaces. */
  processWord(word: string, lookup: VariableLookup): string {
    return this.process(word, lookup).word;
  }

  /** ProcessWords: like {@link processWord}, then split on unquoted whitespace. */
  processWords(word: string, lookup: VariableLookup): string[] {
    return this.process(word, lookup).words;
  }

  /** Both results plus which variables were looked up. Throws {@link ShellLexError}. */
  process(word: string, lookup: VariableLookup): LexResult {
    const run = new LexRun(new Scanner(word), lookup, this.escape, this.options);
    try {
      const [w, ws] = run.processStopOn(EOF, false);
      return { word: w, words: ws, matched: run.matched, unmatched: run.unmatched };
    } catch (err) {
      if (err instanceof ShellLexError) {
        throw new ShellLexError(`failed to process "${word}": ${err.message}`);
      }
      throw err;
    }
  }
}

class LexRun {
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  private readonly maxLength: number;

  constructor(
    private readonly sc: Scanner,
    private readonly lookup: VariableLookup,
    private readonly escape: number,
    private readonly opts: ShellLexOptions,
  ) {
    this.maxLength = opts.maxLength?.length ?? Infinity;
  }

  /** Fails once a piece of the result under construction is longer than allowed. */
  private bound(text: string): string {
    this.checkLength(text.length);
    return text;
  }

  private checkWork(work: number): void {
    const max = this.opts.maxPatternWork;
    if (max !== undefined && work > max.work) {
      throw new LimitExceededError(max.name, max.work, `pattern matching (${work}+ characters scanned)`);
    }
  }

  private checkLength(length: number): void {
    if (length > this.maxLength) {
      throw new LimitExceededError(
        this.opts.maxLength?.name ?? 'maxLength',
        this.maxLength,
        `expanded word (${length}+ characters)`,
      );
    }
  }

  processStopOn(stop: number, rawEscapes: boolean): [string, string[]] {
    const [word, words] = this.processStopOnAny(stop === EOF ? [] : [stop], rawEscapes);
    return [word, words];
  }

  /** Returns the text, its words, and the stop character met (EOF when none). */
  processStopOnAny(stops: number[], rawEscapes: boolean): [string, string[], number] {
    let result = '';
    const words = new Words();
    const quotes = !this.opts.skipProcessQuotes;
    while (this.sc.peek() !== EOF) {
      let ch = this.sc.peek();
      if (stops.includes(ch)) {
        this.sc.next();
        return [result, words.getWords(), ch];
      }
      if (ch === 0x24 /* $ */) {
        const tmp = this.processDollar();
        result = this.bound(result + tmp);
        words.addString(tmp);
        continue;
      }
      if (quotes && (ch === 0x27 || ch === 0x22)) {
        const tmp = ch === 0x27 ? this.processSingleQuote() : this.processDoubleQuote();
        result = this.bound(result + tmp);
        words.addRawString(tmp);
        continue;
      }
      ch = this.sc.next();
      if (ch === this.escape) {
        if (this.opts.rawEscapes || rawEscapes) {
          words.addRawChar(chr(ch));
          result += chr(ch);
        }
        ch = this.sc.next();
        if (ch === EOF) {
          break;
        }
        words.addRawChar(chr(ch));
      } else {
        words.addChar(chr(ch));
      }
      result += chr(ch);
    }
    if (stops.length > 0) {
      throw new ShellLexError(
        `unexpected end of statement while looking for matching ${stops.map(chr).join('')}`,
      );
    }
    return [result, words.getWords(), EOF];
  }

  private processSingleQuote(): string {
    // Everything up to the next ' is literal; a ' cannot be escaped inside.
    let result = '';
    const open = this.sc.next();
    if (this.opts.rawQuotes) {
      result += chr(open);
    }
    for (;;) {
      const ch = this.sc.next();
      if (ch === EOF) {
        throw new ShellLexError('unexpected end of statement while looking for matching single-quote');
      }
      if (ch === 0x27) {
        if (this.opts.rawQuotes) {
          result += chr(ch);
        }
        return result;
      }
      result += chr(ch);
    }
  }

  private processDoubleQuote(): string {
    // Literal except $ and the escape token, which escapes only " $ and itself.
    let result = '';
    const open = this.sc.next();
    if (this.opts.rawQuotes) {
      result += chr(open);
    }
    for (;;) {
      const peek = this.sc.peek();
      if (peek === EOF) {
        throw new ShellLexError('unexpected end of statement while looking for matching double-quote');
      }
      if (peek === 0x22) {
        const ch = this.sc.next();
        if (this.opts.rawQuotes) {
          result += chr(ch);
        }
        return result;
      }
      if (peek === 0x24) {
        result = this.bound(result + this.processDollar());
        continue;
      }
      let ch = this.sc.next();
      if (ch === this.escape) {
        if (this.opts.rawEscapes) {
          result += chr(ch);
        }
        const next = this.sc.peek();
        if (next === EOF) {
          continue;
        }
        if (next === 0x22 || next === 0x24 || next === this.escape) {
          ch = this.sc.next();
        }
      }
      result += chr(ch);
    }
  }

  private getEnv(name: string): string | undefined {
    const value = this.lookup(name);
    if (value === undefined) {
      this.unmatched.add(name);
    } else {
      this.matched.add(name);
    }
    return value;
  }

  private processDollar(): string {
    this.sc.next();
    if (this.sc.peek() !== 0x7b /* { */) {
      const name = this.processName();
      if (name === '') {
        return '$';
      }
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) {
        return '$' + name;
      }
      return value ?? '';
    }
    this.sc.next();
    const first = this.sc.peek();
    if (first === EOF) {
      throw new ShellLexError("syntax error: missing '}'");
    }
    if (first === 0x7b || first === 0x7d || first === 0x3a) {
      throw new ShellLexError('syntax error: bad substitution');
    }
    const name = this.processName();
    let ch = this.sc.next();
    let modifier = ch === EOF ? '' : chr(ch);
    let nullIsUnset = false;
    switch (ch) {
      case 0x7d /* } */: {
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) {
          return `\${${name}}`;
        }
        return value ?? '';
      }
      case 0x3a /* : */:
      case 0x2b /* + */:
      case 0x2d /* - */:
      case 0x3f /* ? */:
      case 0x23 /* # */:
      case 0x25 /* % */: {
        if (ch === 0x3a) {
          nullIsUnset = true;
          ch = this.sc.next();
          modifier += ch === EOF ? '' : chr(ch);
        }
        const rawEscapes = ch === 0x23 || ch === 0x25;
        if (nullIsUnset && rawEscapes) {
          throw new ShellLexError(`unsupported modifier (${modifier}) in substitution`);
        }
        const word = this.wordUntilBrace(rawEscapes);
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) {
          return `\${${name}${modifier}${word}}`;
        }
        const unset = value === undefined || (nullIsUnset && value === '');
        switch (ch) {
          case 0x2d:
            return unset ? word : (value ?? '');
          case 0x2b:
            return unset ? '' : word;
          case 0x3f:
            if (value === undefined) {
              throw new ShellLexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
            }
            if (nullIsUnset && value === '') {
              throw new ShellLexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
            }
            return value;
          case 0x23:
          case 0x25: {
            let pattern = word;
            let greedy = false;
            if (pattern.startsWith(chr(ch))) {
              greedy = true;
              pattern = pattern.slice(1);
            }
            return trimPattern(
              value ?? '',
              pattern,
              greedy,
              ch === 0x23 ? 'prefix' : 'suffix',
              this.escape,
              (work) => this.checkWork(work),
            );
          }
          default:
            throw new ShellLexError(`unsupported modifier (${modifier}) in substitution`);
        }
      }
      case 0x2f /* / */: {
        const all = this.sc.peek() === 0x2f;
        if (all) {
          this.sc.next();
        }
        let pattern: string;
        let stop: number;
        try {
          [pattern, , stop] = this.processStopOnAny([0x2f, 0x7d], true);
        } catch (err) {
          throw this.missingBrace(err);
        }
        const replacement = stop === 0x7d ? '' : this.wordUntilBrace(false);
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) {
          return `\${${name}/${all ? '/' : ''}${pattern}${stop === 0x7d ? '' : '/' + replacement}}`;
        }
        return replacePattern(
          value ?? '',
          pattern,
          replacement,
          all,
          this.escape,
          (n) => this.checkLength(n),
          (work) => this.checkWork(work),
        );
      }
      default:
        if (ch === EOF) {
          throw new ShellLexError("syntax error: missing '}'");
        }
        throw new ShellLexError(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  private wordUntilBrace(rawEscapes: boolean): string {
    try {
      return this.processStopOn(0x7d, rawEscapes)[0];
    } catch (err) {
      throw this.missingBrace(err);
    }
  }

  private missingBrace(err: unknown): unknown {
    if (err instanceof ShellLexError && this.sc.peek() === EOF) {
      return new ShellLexError("syntax error: missing '}'");
    }
    return err;
  }

  private processName(): string {
    // A name is [letters digits _]; a leading digit reads digits only ($1); a special
    // parameter ($@ $* $# ...) is one character.
    let name = '';
    while (this.sc.peek() !== EOF) {
      const ch = this.sc.peek();
      if (name.length === 0 && isDigit(ch)) {
        while (this.sc.peek() !== EOF && isDigit(this.sc.peek())) {
          name += chr(this.sc.next());
        }
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) {
        return chr(this.sc.next());
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== 0x5f) {
        break;
      }
      name += chr(this.sc.next());
    }
    return name;
  }
}

/** Converts a shell glob (`*`, `?`, `[...]`, escaped chars) to a regular expression source. */
function globToRegex(pattern: string, greedy: boolean, escape: number): string {
  let out = '';
  const cps = Array.from(pattern);
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i] ?? '';
    if (c.codePointAt(0) === escape && i + 1 < cps.length) {
      i++;
      out += escapeRegex(cps[i] ?? '');
    } else if (c === '*') {
      out += greedy ? '[\\s\\S]*' : '[\\s\\S]*?';
    } else if (c === '?') {
      out += '[\\s\\S]';
    } else if (c === '[') {
      const close = cps.indexOf(']', i + 2);
      if (close < 0) {
        out += '\\[';
        continue;
      }
      let cls = cps.slice(i + 1, close).join('');
      if (cls.startsWith('!')) {
        cls = '^' + cls.slice(1);
      }
      out += '[' + cls.replace(/\\/g, '\\\\') + ']';
      i = close;
    } else {
      out += escapeRegex(c);
    }
  }
  return out;
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

function compile(source: string): RegExp {
  try {
    return new RegExp(source, 'u');
  } catch {
    throw new ShellLexError(`invalid pattern (${source}) in substitution`);
  }
}

/** True when `pattern` has a glob character (`*`, `?`, `[`) or an escape: not a plain string. */
function isGlob(pattern: string, escape: number): boolean {
  return /[*?[]/.test(pattern) || pattern.includes(String.fromCodePoint(escape));
}

function trimPattern(
  value: string,
  pattern: string,
  greedy: boolean,
  side: 'prefix' | 'suffix',
  escape: number,
  checkWork: (work: number) => void,
): string {
  const n = value.length;
  if (!isGlob(pattern, escape)) {
    // A plain string matches one prefix (suffix) length only: no search.
    if (side === 'prefix') {
      return value.startsWith(pattern) ? value.slice(pattern.length) : value;
    }
    return value.endsWith(pattern) ? value.slice(0, n - pattern.length) : value;
  }
  const re = compile('^(?:' + globToRegex(pattern, true, escape) + ')$');
  let work = 0;
  if (side === 'prefix') {
    // ${VAR#p} removes the shortest matching prefix, ${VAR##p} the longest.
    for (let k = 0; k <= n; k++) {
      const len = greedy ? n - k : k;
      checkWork((work += len + 1));
      if (re.test(value.slice(0, len))) {
        return value.slice(len);
      }
    }
    return value;
  }
  for (let k = 0; k <= n; k++) {
    const len = greedy ? n - k : k;
    checkWork((work += len + 1));
    if (re.test(value.slice(n - len))) {
      return value.slice(0, n - len);
    }
  }
  return value;
}

function replacePattern(
  value: string,
  pattern: string,
  replacement: string,
  all: boolean,
  escape: number,
  checkLength: (length: number) => void,
  checkWork: (work: number) => void,
): string {
  if (pattern === '') {
    return value;
  }
  // A `*` lets the regex scan to the end from every position it starts at: quadratic at worst,
  // checked before running it (V8 cannot stop a regex half-way).
  const n = value.length;
  checkWork(pattern.includes('*') ? (n * (n + 1)) / 2 : n * (pattern.length + 1));
  const re = compile(globToRegex(pattern, true, escape));
  const flags = all ? 'gu' : 'u';
  // `${A//?/$B}` multiplies two lengths: count what the replacements add as they happen.
  let grown = value.length;
  return value.replace(new RegExp(re.source, flags), (match: string) => {
    grown += replacement.length - match.length;
    checkLength(grown);
    return replacement;
  });
}
