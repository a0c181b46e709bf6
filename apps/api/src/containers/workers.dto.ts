import { z } from 'zod';
import { WORKER_ID_PATTERN } from '@stratum/contracts';

export type { WorkerRemoved, WorkerView } from '@stratum/contracts';

export const WorkerIdParamSchema = z
  .string()
  .regex(WORKER_ID_PATTERN, 'a worker id is 1-128 of [A-Za-z0-9_.-], not starting with "." or "-"');
