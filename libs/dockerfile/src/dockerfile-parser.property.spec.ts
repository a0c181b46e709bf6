import fc from 'fast-check';

import { planBuild } from './build-planner';
import { checkDockerfile } from './dockerfile-checks';
import { DockerfileError } from './dockerfile-error';
import { parseDockerfile } from './dockerfile-parser';

// Fragments that exercise every lexer path: keywords, flags, quotes, escapes,
// continuations, heredocs, directives, JSON.
const FRAGMENTS = [
  'FROM ',
  'RUN ',
  'COPY ',
  'ADD ',
  'ENV ',
  'ARG ',
  'LABEL ',
  'ONBUILD ',
  'HEALTHCHECK ',
  'SHELL ',
  'EXPOSE ',
  'CMD ',
  'VOLUME ',
  'WORKDIR ',
  'USER ',
  'STOPSIGNAL ',
  'MAINTAINER ',
  'ENTRYPOINT ',
  'AS ',
  'scratch',
  'alpine',
  '--mount=',
  'type=cache,',
  'target=/x',
  '--from=',
  '--chown=',
  '--link',
  '--',
  '<<',
  '<<-',
  'EOF',
  '"EOF"',
  '\n',
  '\n',
  '\t',
  ' ',
  '\\',
  '\\\n',
  '`',
  '# escape=`\n',
  '# syntax=x\n',
  '#',
  '"',
  "'",
  '[',
  ']',
  '["a"]',
  ',',
  '=',
  '$',
  '${',
  '}',
  ':-',
  ':?',
  'A',
  '0',
  '\r\n',
  '\uFEFF',
  '안',
  '😀',
];

describe('parseDockerfile property', () => {
  it('throws nothing but DockerfileError on random input, and terminates quickly', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 60 }).map((a) => a.join('')),
          fc.string({ maxLength: 200 }),
        ),
        (text) => {
          const started = Date.now();
          try {
            parseDockerfile(text);
          } catch (err) {
            if (!(err instanceof DockerfileError)) {
              throw err;
            }
            expect(typeof err.message).toBe('string');
          }
          expect(Date.now() - started).toBeLessThan(200);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('any parsed instruction spans lines inside the file, in order', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 60 }), (parts) => {
        const text = 'FROM scratch\n' + parts.join('');
        let df;
        try {
          df = parseDockerfile(text);
        } catch {
          return;
        }
        const total = text.split('\n').length;
        let previous = 0;
        for (const i of df.instructions) {
          expect(i.startLine).toBeGreaterThan(previous);
          expect(i.endLine).toBeGreaterThanOrEqual(i.startLine);
          expect(i.endLine).toBeLessThanOrEqual(total);
          previous = i.endLine;
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('build checks throw nothing but DockerfileError either, and only where the parse or plan does', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...FRAGMENTS, 'CMD x\n', 'WORKDIR a\n', 'ENV k v\n', 'ARG TOKEN\n'), {
          maxLength: 60,
        }),
        (parts) => {
          const text = 'FROM alpine\n' + parts.join('');
          try {
            checkDockerfile(text);
          } catch (err) {
            if (!(err instanceof DockerfileError)) {
              throw err;
            }
            expect(() => planBuild(parseDockerfile(text, { allowDuplicateStageNames: true }))).toThrow(
              DockerfileError,
            );
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
