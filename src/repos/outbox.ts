import type { Knex } from 'knex';
import { affectedRows } from '../infra/db.ts';

export interface OutboxRow {
  id: string;
  recipient: string;
  template: string;
  locale: string;
  payload_sealed: string | null;
  status: 'pending' | 'sent';
  attempts: number;
  next_attempt_at: Date;
  last_error: string | null;
  created_at: Date;
  sent_at: Date | null;
}

export type NewOutboxRow = Pick<OutboxRow, 'id' | 'recipient' | 'template' | 'locale' | 'payload_sealed'>;

export function createOutboxRepo(db: Knex) {
  const table = () => db<OutboxRow>('outbox');
  return {
    /** Pass `trx` to commit the mail with the change that causes it (a rollback then sends nothing). */
    async insert(row: NewOutboxRow, trx?: Knex.Transaction): Promise<void> {
      await (trx ?? db)('outbox').insert(row);
    },

    /**
     * Claims up to `limit` due rows. Rows locked by another instance's claim are skipped, and a
     * claimed row is leased (its next attempt moved `leaseMs` ahead) before the transaction commits,
     * so the sending happens outside any transaction: no connection is held during SMTP, and a
     * crash mid-send only delays the row until the lease runs out.
     */
    async claimDue(limit: number, leaseMs: number): Promise<OutboxRow[]> {
      return db.transaction(async (trx) => {
        const rows = (await trx<OutboxRow>('outbox')
          .where({ status: 'pending' })
          .where('next_attempt_at', '<=', trx.fn.now())
          .orderBy('next_attempt_at')
          .limit(limit)
          .forUpdate()
          .skipLocked()) as OutboxRow[];
        if (rows.length) {
          await trx('outbox')
            .whereIn('id', rows.map((r) => r.id))
            .update({ next_attempt_at: trx.raw("now() + ? * interval '1 millisecond'", [leaseMs]) });
        }
        return rows;
      });
    },

    /** Marks a row sent and drops its sealed payload: the codes and links are not kept after use. */
    async markSent(id: string): Promise<void> {
      await table()
        .where({ id })
        .update({ status: 'sent', sent_at: db.fn.now() as never, payload_sealed: null, last_error: null });
    },

    /** Counts a failed attempt; the next one is `baseMs` doubled per earlier failure, at most `maxMs` away. */
    async markFailed(id: string, error: string, baseMs: number, maxMs: number): Promise<void> {
      await table()
        .where({ id, status: 'pending' })
        .update({
          attempts: db.raw('attempts + 1') as never,
          last_error: error,
          next_attempt_at: db.raw(
            "now() + least(?::float8, ?::float8 * power(2, least(attempts, 40))) * interval '1 millisecond'",
            [maxMs, baseMs],
          ) as never,
        });
    },

    async find(id: string): Promise<OutboxRow | undefined> {
      return table().where({ id }).first();
    },

    /** Mail not yet sent, and how long the oldest of it has waited (the metrics' queue depth). */
    async pendingDepth(): Promise<{ pending: number; oldestPendingSeconds: number }> {
      const row = (await table()
        .where({ status: 'pending' })
        .select(db.raw('count(*)::int as pending'), db.raw('coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as oldest'))
        .first()) as unknown as { pending: number | string; oldest: number | string } | undefined;
      return { pending: Number(row?.pending ?? 0), oldestPendingSeconds: Number(row?.oldest ?? 0) };
    },

    /** Deletes sent rows older than `days` (the sweeper's schedule). */
    async sweepSent(days: number): Promise<number> {
      return affectedRows(
        await table()
          .where({ status: 'sent' })
          .where('sent_at', '<', db.raw('now() - make_interval(days => ?)', [days]))
          .delete(),
      );
    },
  };
}

export type OutboxRepo = ReturnType<typeof createOutboxRepo>;
