import { z } from 'zod';

/** `feature/x.svg` arrives as segments (Express 5 `*branch`): the branch name without `.svg`. */
export const BranchSvgSchema = z.preprocess(
  (v) => (Array.isArray(v) ? v.join('/') : v),
  z
    .string()
    .max(260)
    .regex(/^[^\s~^:?*[\\]+\.svg$/, 'must be <branch>.svg')
    .transform((s) => s.slice(0, -'.svg'.length)),
);
