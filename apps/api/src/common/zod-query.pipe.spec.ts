import { z } from 'zod';
import { ZodPipe } from './zod-query.pipe';

const pipe = new ZodPipe(
  z.object({
    repository: z.string(),
    tag: z.string().default('latest'),
    n: z.coerce.number().int().optional(),
  }),
);
const messageOf = (value: unknown): string => {
  try {
    pipe.transform(value);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
};

describe('ZodPipe messages', () => {
  it('names a missing field as required', () => {
    expect(messageOf({})).toBe('invalid request: repository is required');
  });
  it('keeps the schema message for a present but bad value', () => {
    expect(messageOf({ repository: 'x', n: 'abc' })).toMatch(/^invalid request: n: .*number/);
    expect(messageOf({ repository: 5 })).toMatch(/^invalid request: repository: .*expected string/);
  });
  it('passes a valid value with defaults', () => {
    expect(pipe.transform({ repository: 'x' })).toEqual({ repository: 'x', tag: 'latest' });
  });
});
