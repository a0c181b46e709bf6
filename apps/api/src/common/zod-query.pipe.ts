import { PipeTransform } from '@nestjs/common';
import { z } from 'zod';
import { StratumError } from '@stratum/contracts';

/**
 * A missing field reads "repository is required" rather than zod's "Invalid input: expected
 * string, received undefined"; other problems keep the schema's own message.
 */
const requiredFieldMessage: z.core.$ZodErrorMap = (issue) =>
  issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : undefined;

/** Validates a request part with a zod schema; a failure is a 400 naming each bad field. */
export class ZodPipe<S extends z.ZodType> implements PipeTransform<unknown, z.infer<S>> {
  constructor(private readonly schema: S) {}

  transform(value: unknown): z.infer<S> {
    const result = this.schema.safeParse(value ?? {}, { error: requiredFieldMessage });
    if (!result.success) {
      const problems = result.error.issues.map((i) => {
        const field = i.path.join('.') || 'request';
        return i.message === 'is required' ? `${field} is required` : `${field}: ${i.message}`;
      });
      throw new StratumError('BAD_REQUEST', `invalid request: ${problems.join('; ')}`);
    }
    return result.data;
  }
}
