import { Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';

/** What the audit log records. */
export type AuditAction = 'login' | 'push' | 'delete' | 'tag' | 'build' | 'commit' | 'import' | 'robot';

/** One audit entry: who did what to which repository, from where, when. */
export interface AuditEntry {
  /** The stream entry id (`<ms>-<seq>`): time order. */
  readonly id: string;
  readonly at: string;
  readonly action: AuditAction;
  /** A user, `token:<name>`, `robot:<name>`, `anonymous`, or `local` (API_AUTH off). */
  readonly subject: string;
  /** The client's address. */
  readonly client: string;
  readonly repository?: string;
  /** A tag, digest, build id or robot name. */
  readonly target?: string;
  readonly outcome: 'ok' | 'refused';
  readonly detail?: string;
}

const STREAM = 'stratum:audit';
/** At most this many entries are kept whatever the retention (XTRIM MAXLEN ~). */
const MAX_ENTRIES = 1_000_000;
export const MAX_AUDIT_PAGE = 1000;

/**
 * The audit log: a Redis stream, entries older than the retention dropped on every write (XADD
 * … MINID ~), never more than {@link MAX_ENTRIES}. A failed write is logged and does not fail
 * the request it records (the action already happened).
 */
export class AuditLog {
  private readonly logger = new Logger('AuditLog');

  constructor(
    private readonly redis: Redis,
    private readonly retentionSeconds: number,
  ) {}

  async record(
    entry: Omit<AuditEntry, 'id' | 'at' | 'outcome'> & { outcome?: 'ok' | 'refused' },
  ): Promise<void> {
    const fields: string[] = ['action', entry.action, 'subject', entry.subject, 'client', entry.client];
    fields.push('outcome', entry.outcome ?? 'ok');
    for (const k of ['repository', 'target', 'detail'] as const) {
      const v = entry[k];
      if (v !== undefined) {
        fields.push(k, v.slice(0, 1024));
      }
    }
    const minId = Date.now() - this.retentionSeconds * 1000;
    try {
      await this.redis
        .multi()
        .xadd(STREAM, 'MINID', '~', String(minId), '*', ...fields)
        .xtrim(STREAM, 'MAXLEN', '~', MAX_ENTRIES)
        .exec();
    } catch (err) {
      this.logger.warn(
        `audit entry not written (${entry.action} by ${entry.subject}): ${(err as Error).message}`,
      );
    }
  }

  /** Newest first, at most `limit`, optionally one action, subject and/or repository. */
  async list(query: {
    limit: number;
    action?: string;
    subject?: string;
    repository?: string;
  }): Promise<AuditEntry[]> {
    const out: AuditEntry[] = [];
    let end = '+';
    while (out.length < query.limit) {
      const batch = (await this.redis.xrevrange(STREAM, end, '-', 'COUNT', 500)) as [string, string[]][];
      for (const [id, kv] of batch) {
        const f: Record<string, string> = {};
        for (let i = 0; i + 1 < kv.length; i += 2) {
          f[kv[i]] = kv[i + 1]!;
        }
        if (
          (query.action !== undefined && f.action !== query.action) ||
          (query.subject !== undefined && f.subject !== query.subject) ||
          (query.repository !== undefined && f.repository !== query.repository)
        ) {
          continue;
        }
        out.push({
          id,
          at: new Date(Number(id.split('-')[0])).toISOString(),
          action: f.action as AuditAction,
          subject: f.subject ?? '',
          client: f.client ?? '',
          outcome: f.outcome === 'refused' ? 'refused' : 'ok',
          ...(f.repository !== undefined ? { repository: f.repository } : {}),
          ...(f.target !== undefined ? { target: f.target } : {}),
          ...(f.detail !== undefined ? { detail: f.detail } : {}),
        });
        if (out.length >= query.limit) {
          break;
        }
      }
      if (batch.length < 500) {
        break;
      }
      const last = batch[batch.length - 1][0];
      const [ms, seq] = last.split('-').map(Number) as [number, number];
      end = seq > 0 ? `${ms}-${seq - 1}` : `${ms - 1}`;
    }
    return out;
  }
}
