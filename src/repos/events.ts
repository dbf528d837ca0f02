import type { Knex } from 'knex';

export interface EventRow {
  id: string;
  type: string;
  tenant_id: string;
  subject_id: string | null;
  actor: string | null;
  request_id: string | null;
  payload: Record<string, unknown>;
  occurred_at: Date;
}

export function createEventsRepo(db: Knex) {
  return {
    /** Written with `trx` when the event belongs to the same transaction as the change it records. */
    async insert(row: Omit<EventRow, 'occurred_at'>, trx?: Knex.Transaction): Promise<void> {
      await (trx ?? db)('events').insert({ ...row, payload: JSON.stringify(row.payload) });
    },
  };
}

export type EventsRepo = ReturnType<typeof createEventsRepo>;
