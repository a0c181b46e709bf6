import { checkDockerfile } from '@stratum/dockerfile';
import { formatCheckReport } from './check-report';

describe('formatCheckReport', () => {
  it('prints what docker build --check prints: summary, rule, URL, message, lines', () => {
    const text = 'FROM alpine\nENTRYPOINT my-program start\n';
    expect(formatCheckReport(checkDockerfile(text), text, 'Dockerfile')).toBe(
      [
        'Check complete, 1 warning has been found!',
        '',
        'WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/',
        'JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals',
        'Dockerfile:2',
        '--------------------',
        '   1 |     FROM alpine',
        '   2 | >>> ENTRYPOINT my-program start',
        '   3 |',
        '--------------------',
        '',
      ].join('\n'),
    );
  });

  it('no warnings; error=true adds the error line', () => {
    expect(formatCheckReport(checkDockerfile('FROM alpine\n'), 'FROM alpine\n', 'Dockerfile')).toBe(
      'Check complete, no warnings found.\n',
    );
    const text = '# check=error=true\nFROM alpine as a\nCMD x\n';
    const report = formatCheckReport(checkDockerfile(text), text, 'Dockerfile');
    expect(report).toMatch(/^Check complete, 2 warnings have been found!\n/);
    expect(report).toMatch(/ERROR: lint violation found for rules: FromAsCasing, JSONArgsRecommended\n$/);
  });
});
