import { StratumError } from '@stratum/contracts';
import { DockerfileError } from '@stratum/dockerfile';
import { BuildError, isUserBuildError, truncateErrorMessage } from './build-errors';

describe('isUserBuildError (never retried onto another worker)', () => {
  it('counts the build budgets: Dockerfile and context limits, V8 string/array limits', () => {
    expect(isUserBuildError(new DockerfileError('DOCKERFILE_LIMIT', 'x', 3))).toBe(true);
    expect(isUserBuildError(new StratumError('CONTEXT_TOO_LARGE', 'too many entries'))).toBe(true);
    expect(isUserBuildError(new RangeError('Invalid string length'))).toBe(true);
    expect(isUserBuildError(new RangeError('Array buffer allocation failed'))).toBe(true);
    expect(isUserBuildError(new BuildError('exit code: 1', 2))).toBe(true);
  });

  it('leaves host faults to retry', () => {
    expect(isUserBuildError(new RangeError('offset out of range'))).toBe(false);
    expect(isUserBuildError(new StratumError('UNAVAILABLE', 'redis down'))).toBe(false);
    expect(isUserBuildError(new Error('ECONNRESET'))).toBe(false);
  });
});

describe('truncateErrorMessage', () => {
  it('keeps short messages as they are', () => {
    expect(truncateErrorMessage('Dockerfile:3: exit code: 1')).toBe('Dockerfile:3: exit code: 1');
  });

  it('keeps the start and the end of a long one within the bound', () => {
    const long = `Dockerfile:12: process "/bin/sh -c ${'y'.repeat(100_000)}" exit code: 2`;
    const short = truncateErrorMessage(long, 1000);
    expect(short.length).toBeLessThanOrEqual(1000);
    expect(short.startsWith('Dockerfile:12: process "/bin/sh -c yyy')).toBe(true);
    expect(short.endsWith('yyy" exit code: 2')).toBe(true);
    expect(short).toMatch(/\[\.\.\. \d+ characters omitted \.\.\.\]/);
  });
});
