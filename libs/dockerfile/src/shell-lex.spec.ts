import { ShellLex, ShellLexError } from './shell-lex';

// Environment of BuildKit's lex tests.
const ENV: Record<string, string> = {
  PWD: '/home',
  SHELL: 'bash',
  KOREAN: '한국어',
  NULL: '',
  SPACED: 'a  b c',
};
const lookup = (name: string): string | undefined => ENV[name];

/** `input | expected` rows; `error` means the input must be rejected. Cases follow BuildKit's envVarTest. */
const WORD_CASES = String.raw`
hello                      | hello
he'll'o                    | hello
he'llo                     | error
he\'llo                    | he'llo
he\\'llo                   | error
abc\tdef                   | abctdef
"abc\tdef"                 | abc\tdef
"abc\\tdef"                | abc\tdef
'abc\tdef'                 | abc\tdef
hello\                     | hello
hello\\                    | hello\
"hello                     | error
"hello\"                   | error
"hel'lo"                   | hel'lo
'hello                     | error
'hello\'                   | hello\
'hello\there'              | hello\there
'hello\\there'             | hello\\there
"''"                       | ''
$.                         | $.
he$1x                      | hex
he$.x                      | he$.x
he$pwd.                    | he.
he$PWD                     | he/home
he\$PWD                    | he$PWD
he\\$PWD                   | he\/home
"he\$PWD"                  | he$PWD
"he\\$PWD"                 | he\/home
\$\{}                       | $\{}
\$\{}aaa                    | $\{}aaa
he\$\{}                     | he$\{}
he\$\{}xx                   | he$\{}xx
$\{}                        | error
$\{}aaa                     | error
he$\{}                      | error
he$\{}xx                    | error
he$\{hi}                    | he
he$\{hi}xx                  | hexx
he$\{PWD}                   | he/home
he$\{.}                     | error
he$\{XXX:-000}xx            | he000xx
he$\{PWD:-000}xx            | he/homexx
he$\{XXX:-$PWD}xx           | he/homexx
he$\{XXX:-$\{PWD:-yyy}}xx    | he/homexx
he$\{XXX:-$\{YYY:-yyy}}xx    | heyyyxx
he$\{XXX:YYY}               | error
he$\{XXX?}                  | error
he$\{XXX:?}                 | error
he$\{PWD?}                  | he/home
he$\{PWD:?}                 | he/home
he$\{NULL?}                 | he
he$\{NULL:?}                | error
he$\{XXX:+$\{PWD}}xx         | hexx
he$\{PWD:+$\{XXX}}xx         | hexx
he$\{PWD:+$\{SHELL}}xx       | hebashxx
he$\{XXX:+000}xx            | hexx
he$\{PWD:+000}xx            | he000xx
he$\{XXX-000}xx             | he000xx
he$\{NULL-000}xx            | hexx
he$\{NULL:-000}xx           | he000xx
he$\{XXX+000}xx             | hexx
he$\{NULL+000}xx            | he000xx
he$\{NULL:+000}xx           | hexx
'he$\{XX}'                  | he$\{XX}
"he$\{PWD}"                 | he/home
"he'$PWD'"                 | he'/home'
"$PWD"                     | /home
'$PWD'                     | $PWD
'\$PWD'                    | \$PWD
'"hello"'                  | "hello"
'he\$PWD'                  | he\$PWD
he$\{PWD                    | error
he$\{PWD:=000}xx            | error
he$\{PWD:+$\{PWD}:}xx        | he/home:xx
he$\{XXX:-\$PWD:}xx         | he$PWD:xx
he$\{XXX:-\$\{PWD}z}xx       | he$\{PWDz}xx
안녕하세요                 | 안녕하세요
안'녕'하세요               | 안녕하세요
안'녕하세요                | error
안녕\'하세요               | 안녕'하세요
"안녕'하세요"              | 안녕'하세요
$KOREAN                    | 한국어
$\{KOREAN}x                 | 한국어x
$                          | $
he$                        | he$
"a$"                       | a$
$@x                        | x
$\{PWD#/}                   | home
$\{PWD#*o}                  | me
$\{PWD##*/}                 | home
$\{SHELL%h}                 | bas
$\{SHELL%%a*}               | b
$\{SHELL%?}                 | bas
$\{PWD/o/0}                 | /h0me
$\{SPACED// /_}             | a__b_c
`;

function rows(table: string): [string, string][] {
  return table
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const bar = l.lastIndexOf('|');
      // The table writes \`$\{\` for \`\${\` to stay a valid template literal.
      const unescape = (x: string): string => x.trim().replaceAll('$\\{', '$' + '{');
      return [unescape(l.slice(0, bar)), unescape(l.slice(bar + 1))];
    });
}

describe('ShellLex.processWord (BuildKit envVarTest)', () => {
  const lex = new ShellLex();
  it.each(rows(WORD_CASES))('%s → %s', (input, expected) => {
    if (expected === 'error') {
      expect(() => lex.processWord(input, lookup)).toThrow(ShellLexError);
    } else {
      expect(lex.processWord(input, lookup)).toBe(expected);
    }
  });

  it('error messages name the word and the problem', () => {
    expect(() => lex.processWord('${XXX:?must be set}', lookup)).toThrow(
      'failed to process "${XXX:?must be set}": XXX: must be set',
    );
    expect(() => lex.processWord('${XXX?}', lookup)).toThrow('XXX: is not allowed to be unset');
    expect(() => lex.processWord('${NULL:?}', lookup)).toThrow('NULL: is not allowed to be empty');
    expect(() => lex.processWord('${PWD', lookup)).toThrow("syntax error: missing '}'");
    expect(() => lex.processWord('${}', lookup)).toThrow('bad substitution');
    expect(() => lex.processWord('${PWD:=x}', lookup)).toThrow('unsupported modifier (:=) in substitution');
    expect(() => lex.processWord("'abc", lookup)).toThrow('looking for matching single-quote');
  });

  it('reports which variables were found and which were unset', () => {
    const r = lex.process('$PWD ${NOPE:-x} ${NULL}', lookup);
    expect([...r.matched].sort()).toEqual(['NULL', 'PWD']);
    expect([...r.unmatched]).toEqual(['NOPE']);
  });
});

describe('ShellLex with the backtick escape token', () => {
  const lex = new ShellLex({ escapeToken: '`' });
  it.each([
    ['he`$PWD', 'he$PWD'],
    ['"a`"b"', 'a"b'],
    ['c:\\windows\\$PWD', 'c:\\windows\\/home'],
    ['"c:\\x"', 'c:\\x'],
    ['a``b', 'a`b'],
    ['a` b', 'a b'],
  ])('%s → %s', (input, expected) => {
    expect(lex.processWord(input, lookup)).toBe(expected);
  });
});

/** ProcessWords: splitting happens after substitution, quoted text stays one word. */
const WORDS_CASES: [string, string[]][] = [
  ['hello', ['hello']],
  ['hello world', ['hello', 'world']],
  ['hello   world', ['hello', 'world']],
  ["'hello   world'", ['hello   world']],
  ["'hello\\   world'", ['hello\\   world']],
  ['"hello   world"', ['hello   world']],
  ['"hello\\   world"', ['hello\\   world']],
  ['hello\\ world', ['hello world']],
  ['  leading and trailing  ', ['leading', 'and', 'trailing']],
  ['$SPACED', ['a', 'b', 'c']],
  ['"$SPACED"', ['a  b c']],
  ['x$SPACED', ['xa', 'b', 'c']],
  ['$NULL', []],
  ['""', []],
  ['80/tcp 443/tcp', ['80/tcp', '443/tcp']],
];

describe('ShellLex.processWords (BuildKit wordsTest)', () => {
  const lex = new ShellLex();
  it.each(WORDS_CASES)('%s', (input, expected) => {
    expect(lex.processWords(input, lookup)).toEqual(expected);
  });

  it('processWord keeps the spaces ProcessWords splits on', () => {
    expect(lex.processWord('a   $SPACED', lookup)).toBe('a   a  b c');
  });
});

describe('ShellLex options used for heredocs', () => {
  it('rawQuotes keeps quotes, skipUnsetEnv keeps unknown references', () => {
    const lex = new ShellLex({ rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
    expect(lex.processWords('RUN <<"EOF" $X ${Y:-z} \\$', () => undefined)).toEqual([
      'RUN',
      '<<"EOF"',
      '$X',
      '${Y:-z}',
      '\\$',
    ]);
  });

  it('skipProcessQuotes treats quotes literally', () => {
    const lex = new ShellLex({ skipProcessQuotes: true });
    expect(lex.processWord(`echo "$PWD" '$SHELL'\n`, lookup)).toBe(`echo "/home" 'bash'\n`);
  });
});
