import { PipeTransform } from '@nestjs/common';
import { z } from 'zod';
import { StratumError } from '@stratum/contracts';

/** Validates a request part with a zod schema; a failure is a 400 naming each bad field. */
export class ZodPipe<S extends z.ZodType> implements PipeTransform<unknown, z.infer<S>> {
  constructor(private readonly schema: S) {}

  transform(value: unknown): z.infer<S> {
    const result = this.schema.safeParse(value ?? {});
    if (!result.success) {
      const problems = result.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`);
      throw new StratumError('BAD_REQUEST', `invalid request: ${problems.join('; ')}`);
    }
    return result.data;
  }
}
