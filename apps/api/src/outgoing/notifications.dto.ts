import { z } from 'zod';

/** `GET /api/v1/notifications/deliveries?limit=`. */
export const HistoryQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });
